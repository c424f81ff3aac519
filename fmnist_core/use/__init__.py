"""Using a trained model: scoring, inference, explanations, export, photo measurements."""
