"""The commands: the CLI, reproduce, bench and the console's output."""
