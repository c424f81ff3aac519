"""A full disk: a small tmpfs (needs root; the test is skipped where mounting is not allowed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


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
