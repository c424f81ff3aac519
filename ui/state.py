"""Process-wide resources, shared by every session of the server."""

from __future__ import annotations

import streamlit as st

from fmnist_core.data import load_fashion_mnist
from fmnist_core.runs import RunManager, RunStore, default_root


@st.cache_resource
def run_manager() -> RunManager:
    """One manager (and so one training thread) per server process, whatever the page or tab."""
    return RunManager(RunStore(default_root()))


@st.cache_resource(show_spinner="Reading Fashion-MNIST…")
def dataset():
    return load_fashion_mnist()
