"""The settings, the recipes and the models."""
