"""Tests of the core: fmnist_core's modules, runs on disk, the command line (no Streamlit)."""
