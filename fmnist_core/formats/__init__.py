"""The formats on disk, each read against a schema: checkpoints, run files, owners, memory."""
