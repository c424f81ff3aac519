"""Shared fixtures: tiny IDX files with real headers, a tiny learnable data set, the real one."""

from __future__ import annotations

import gzip
import json
import resource
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fmnist_core.data import FILES, load_fashion_mnist

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
