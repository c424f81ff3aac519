"""Process-wide resources, shared by every session of the server."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from fmnist_core.analysis.metrics import cached_analysis
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.images.data import load_fashion_mnist
from fmnist_core.modeling.models import count_parameters, create_model, layer_table
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.remote_runs import make_run_manager
from fmnist_core.training.run_manager import RunManager
from ui.sweeps import sweep_launcher
from ui.visitor import studio_policy


@st.cache_resource
def run_manager() -> RunManager:
    """One manager (and so one training thread) per server process, whatever the page or tab;
    with $FMNIST_RAY_ADDRESS set, one that trains each run on that Ray cluster (remote_runs).
    Running sweeps hold places in its queue limits: their trials are runs too."""
    return make_run_manager(RunStore(), policy=studio_policy(), held_elsewhere=lambda: sweep_launcher().slot_owners())


@st.cache_resource(show_spinner="Reading Fashion-MNIST…")
def dataset():
    return load_fashion_mnist()


@st.cache_data(max_entries=64)
def model_card(name: str, width: int | None = None) -> tuple[int, pd.DataFrame]:
    """(parameters, layer table in the report's format) of a model, built once per
    (model, width): building VGG11 and tracing its layers on every rerun is not free."""
    model = create_model(name, width=width) if width else create_model(name)
    table = pd.DataFrame(layer_table(model), columns=["Layer (type)", "Output Shape", "Param #"])
    return count_parameters(model), table.astype({"Output Shape": str})


@st.cache_resource(max_entries=32)
def _load_model(path: str, mtime: float):
    return load_checkpoint(path).model


def cached_model(path: str):
    """A checkpoint's model, loaded once per file version (the mtime is part of the key)."""
    return _load_model(path, os.path.getmtime(path))


@st.cache_resource(max_entries=16, show_spinner="Scoring the test set…")
def _analysis(path: str, mtime: float):
    return cached_analysis(Path(path), dataset())  # kept beside the weights: the shipped models' come with them


def run_analysis(path: str):
    """Test-set predictions of a checkpoint, computed once per file version."""
    return _analysis(path, os.path.getmtime(path))
