"""Shared fixtures: tiny IDX files with real headers, a tiny learnable data set, the real one, the app
with a run store of its own (local or shared mode), and run stores with real trained runs."""

from __future__ import annotations

import gzip
import json
import resource
import struct
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from fmnist_core.images.data import FILES, load_fashion_mnist
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import RunManager
from tests.helpers.runs import RUN_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write a uint8 IDX file exactly as the official ones are laid out."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def synthetic_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Learnable 28x28 images: class c is a bright 8x8 block at a class-specific place."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        images[i, r : r + 8, col : col + 6] = 220
    return images


def make_idx_dir(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 10, n_train).astype(np.uint8)
    test_labels = rng.integers(0, 10, n_test).astype(np.uint8)
    write_idx(folder / FILES["train_images"], synthetic_images(train_labels, 1))
    write_idx(folder / FILES["train_labels"], train_labels)
    write_idx(folder / FILES["test_images"], synthetic_images(test_labels, 2))
    write_idx(folder / FILES["test_labels"], test_labels)
    return folder


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


def frame_with(at, column: str):
    """The first st.dataframe of an AppTest whose value has `column` (frames have no keys there)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    return None


def as_displayed(element) -> dict[str, list[str]]:
    """What each column of an st.dataframe says, row by row, as the grid draws it: under the
    column's label, each value through the column's printf format (none: the value as text),
    the table's placeholder for a missing value (none set: the grid's own, "None")."""
    config = json.loads(element.proto.columns) if element.proto.columns else {}
    placeholder = element.proto.placeholder if element.proto.HasField("placeholder") else "None"
    frame = element.value
    shown = {}
    for name in list(element.proto.column_order) or list(frame.columns):
        column = config.get(name, {})
        number_format = column.get("type_config", {}).get("format")
        shown[column.get("label", name)] = [placeholder if pd.isna(value) else number_format % value
                                            if number_format and number_format.startswith("%") else str(value)
                                            for value in frame[name]]
    return shown


def run_app(at, page: str | None = None):
    """Run an AppTest of the router, then switch to app_pages/<page>.py; no exception allowed."""
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


# ---- a full disk: a small tmpfs (needs root; skipped where mounting is not allowed) ------------


def mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


def fill_disk(folder: Path) -> None:
    """Write zeros into folder/filler until the disk it is on is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


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
