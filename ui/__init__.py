"""Streamlit-side helpers shared by the pages: cached resources, charts, formatting.

The ML lives in fmnist_core; this package only adapts it to Streamlit."""
