"""Where the Studio keeps things: one place resolves every folder, with the overrides.

Folders are anchored at the Studio's home (the checkout holding this package, or
$FMNIST_HOME), never at the current directory, so `python -m fmnist_core` from any
folder, the app and the tests all see the same runs.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_HOME = Path(__file__).resolve().parents[2]  # the checkout: fmnist_core/base/paths.py is three levels down
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def home() -> Path:
    """$FMNIST_HOME, else the checkout that holds the package."""
    return _env_path("FMNIST_HOME") or PACKAGE_HOME


def runs_dir() -> Path:
    """The run store: $FMNIST_RUNS_DIR, else <home>/checkpoints/runs."""
    return _env_path("FMNIST_RUNS_DIR") or home() / "checkpoints" / "runs"


def exports_dir() -> Path:
    """Where `export` and `explain` write when not given --out: <runs>/.exports, so that
    nothing lands in the checkout (or the current folder) unasked. Hidden: the run store
    treats its dot-folders as its own, never as runs."""
    return runs_dir() / ".exports"


def pretrained_dir() -> Path:
    """Shipped checkpoints: $FMNIST_PRETRAINED_DIR, else <home>/checkpoints/pretrained."""
    return _env_path("FMNIST_PRETRAINED_DIR") or home() / "checkpoints" / "pretrained"


def is_shipped(path: Path) -> bool:
    """Whether `path` lies among the shipped checkpoints: files there are tracked by git, so the
    Studio reads caches beside them but never rewrites them (only their build command does)."""
    try:
        return Path(path).resolve().is_relative_to(pretrained_dir().resolve())
    except OSError:
        return False


def local_data_dir() -> Path:
    """Where a download puts the data set: <home>/data."""
    return home() / "data"


def data_dirs() -> list[Path]:
    """Where to look for the data, in order: $FMNIST_DATA_DIR, <home>/data (and
    torchvision's layout in it), Debian's package."""
    local = local_data_dir()
    return [p for p in (_env_path("FMNIST_DATA_DIR"), local, local / "FashionMNIST" / "raw", DEBIAN_DATA_DIR) if p is not None]


def results_dir() -> Path:
    """Reproduced tables: <home>/results."""
    return home() / "results"
