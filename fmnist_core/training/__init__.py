"""The training loop, its queue and worker thread, resuming and fine-tuning."""
