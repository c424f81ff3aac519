"""Sweeps on Ray: the space, the driver process the page starts, and their store."""
