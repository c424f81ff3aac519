"""Shared fixtures: tiny IDX files with real headers, a tiny learnable data set, the real one, the app
with a run store of its own (local or shared mode), and run stores with real trained runs.
Helpers that tests import live in tests/helpers/, never here: a test module imports no conftest."""

from __future__ import annotations

import resource
import threading
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from fmnist_core.images.data import load_fashion_mnist
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import RunManager
from tests.helpers.data import make_idx_dir
from tests.helpers.pages import run_app
from tests.helpers.paths import APP, ROOT
from tests.helpers.runs import RUN_FILES


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return make_idx_dir(tmp_path_factory.mktemp("tiny_idx"))


@pytest.fixture(scope="session")
def tiny_data(tiny_dir):
    return load_fashion_mnist(tiny_dir)


def pytest_collection_modifyitems(items):
    """A test that reads the real data set (the real_data fixture) is a full-data test: left
    out of `make quick` (`-m "not full_data"`), run by `make test`. Marked here, so a new test
    cannot forget it."""
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)


@pytest.fixture(scope="session")
def real_data():
    """The real data set. `make test` installs it; a missing one is a failure, not a skip."""
    return load_fashion_mnist()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share 2 cores with whatever else runs; keep torch from oversubscribing."""
    torch.set_num_threads(1)


@pytest.fixture
def bounded_memory():
    """For tests of a refusal whose regression would start a run far bigger than the machine
    (vgg11 at width 256 and batch 8192 needs ~77 GB): caps this process's address space at what
    it maps now plus 4 GB, so a missing check fails the test with a MemoryError instead of
    exhausting a machine other people share. Children (Ray, a subprocess) inherit the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped_kb = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                     if line.startswith("VmSize:"))
    cap = mapped_kb * 1024 + 4 * 10**9
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# ---- fixtures used by several test modules: the app, run stores, a run to copy ----------------


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app with an empty run store of its own (and a fresh run manager)."""
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()

    def open_page(page: str | None = None) -> AppTest:
        return run_app(AppTest.from_file(APP, default_timeout=60), page)

    yield open_page
    st.cache_resource.clear()


@pytest.fixture
def store_with_two_runs(tmp_path, tiny_data, monkeypatch):
    root = tmp_path / "runs"
    manager = RunManager(RunStore(root), data_loader=lambda: tiny_data)
    base = dict(model="cnn_a", optimizer="sgd", batch_size=32, epochs=2, threads=1)
    manager.submit(TrainConfig(**base, lr=0.01, name="report_cnn_c"))
    manager.submit(TrainConfig(**base, lr=0.1, name="faster"))
    assert manager.wait_idle(120)
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    yield manager
    st.cache_resource.clear()


@pytest.fixture
def held_manager(tmp_path, tiny_data):
    """A shared-mode manager whose worker waits before training, so submitted runs stay
    queued or running while a test looks at the limits; released (and stopped) at the end."""
    release = threading.Event()

    def data():
        release.wait(30)
        return tiny_data

    def make(policy: Policy) -> RunManager:
        manager = RunManager(RunStore(tmp_path / "runs"), data_loader=data, policy=policy)
        managers.append(manager)
        return manager

    managers: list[RunManager] = []
    make.release = release  # a test sets it to let the held runs train
    yield make
    release.set()
    for manager in managers:
        for run_id in manager.active_ids():
            manager.stop(run_id, visitor=manager.policy.visitor("admin@example.org", "admin"))
        manager.wait_idle(60)


@pytest.fixture
def shared_app(tmp_path, monkeypatch):
    """The app in shared mode with its own run store; `secrets` is the [studio] section."""
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()

    def open_page(studio: dict | None = None, visitor: str | None = None, user: dict | None = None, page: str | None = "train",
                  auth: dict | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        if studio is not None:  # new settings: as a restarted server (the policy is read once per process)
            st.cache_resource.clear()
            at.secrets["studio"] = studio
        if auth:
            at.secrets["auth"] = auth
        if visitor:
            at.session_state["visitor_id"] = visitor
        if user:
            at.user = user
        return run_app(at, page)

    yield open_page
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def template_run(tmp_path_factory, tiny_data) -> Path:
    """One real finished run (1 epoch of cnn_a on the tiny data set) to corrupt copies of."""
    store = RunStore(tmp_path_factory.mktemp("template") / "runs")
    manager = RunManager(store, data_loader=lambda: tiny_data)
    run_id = manager.submit(TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=256, epochs=1, threads=1))
    assert manager.wait_idle(120)
    folder = store.root / run_id
    assert {p.name for p in folder.iterdir()} >= {*RUN_FILES, "model.safetensors"}
    return folder
