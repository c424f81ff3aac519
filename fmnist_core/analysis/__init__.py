"""What a trained model is analysed into: metrics, mistake maps, export facts, its card."""
