"""Every model a user can predict with: the shipped pretrained checkpoints and the
finished runs of the run store."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .checkpoint import WEIGHTS_NAME, CheckpointError, inspect_checkpoint
from .run_store import RunStore


@dataclass(frozen=True)
class CheckpointEntry:
    label: str  # for a menu
    path: Path
    source: str  # pretrained | run
    model: str
    test_accuracy: float | None


def _entry(path: Path, source: str, name: str) -> CheckpointEntry | None:
    try:
        # The full check short of loading (bounds, header vs a meta-device model): a crafted
        # file is skipped here, never built, so it cannot take the model picker down.
        meta = inspect_checkpoint(path)
    except CheckpointError:
        return None  # damaged files are listed by the Compare page, not offered here
    accuracy = meta["metrics"].get("test_accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        accuracy = None
    shown = f"{accuracy:.2f}%" if accuracy is not None else "?"
    return CheckpointEntry(f"{name} · {meta['model']} · {shown} ({source})", path, source, meta["model"], accuracy)


def list_checkpoints(store: RunStore | None = None, pretrained_dir: Path | None = None) -> list[CheckpointEntry]:
    """Pretrained first (most accurate first), then runs that saved weights (newest first)."""
    pretrained_dir = pretrained_dir or paths.pretrained_dir()
    entries = []
    if pretrained_dir.is_dir():
        shipped = [_entry(p / WEIGHTS_NAME, "pretrained", p.name) for p in sorted(pretrained_dir.iterdir()) if (p / WEIGHTS_NAME).is_file()]
        entries += sorted((e for e in shipped if e), key=lambda e: -(e.test_accuracy or 0))
    for record in (store or RunStore()).list():
        if record.weights is not None and record.status not in ("queued", "running"):
            entry = _entry(record.weights, "run", record.name)
            if entry:
                entries.append(entry)
    return entries
