"""What a user can predict with and compare, wherever it came from.

- `list_checkpoints`: every model to predict with: the shipped pretrained checkpoints and
  the finished runs of the run store, each file once (identical files are one model).
- `list_comparable`: every entry the Compare page lists: the runs of this machine, the
  shipped models (trained elsewhere, with their history), and the rows of the report's
  Table 1 reproduced in results/ whose run is not here (figures only).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from fmnist_core.base import paths
from fmnist_core.base.files import file_sha256
from fmnist_core.base.statuses import RunStatus
from fmnist_core.base.table1 import TABLE1, read_table1_csv
from fmnist_core.formats.checkpoint import WEIGHTS_NAME, CheckpointError, inspect_checkpoint
from fmnist_core.modeling.config import ConfigError, TrainConfig
from fmnist_core.modeling.recipes import RECIPES
from fmnist_core.store.run_store import RunRecord, RunStore


class Source(StrEnum):
    """Where a Compare entry comes from; its value starts the entry's key ("run:<id>")."""

    RUN = "run"  # a run of this machine's store
    SHIPPED = "shipped"  # a pretrained model shipped with the Studio
    TABLE1 = "table1"  # a reproduced Table 1 row whose run is not here: figures only

    @property
    def label(self) -> str:
        """The table's Source column."""
        return _SOURCE_LABELS[self]


_SOURCE_LABELS = {Source.RUN: "trained here", Source.SHIPPED: "shipped", Source.TABLE1: "results/table1.csv"}


@dataclass(frozen=True)
class CheckpointEntry:
    label: str  # for a menu
    path: Path
    source: str  # pretrained | run
    model: str
    test_accuracy: float | None
    name: str = ""  # the run's or folder's name, without the decorations of `label`
    sha256: str = ""
    trained_on_photos: bool = False  # photos were mixed into its training: a photo set or synthetic photos


def _entry(path: Path, source: str, name: str) -> CheckpointEntry | None:
    try:
        info = os.stat(path)
        return _entry_of_version(path, source, name, info.st_mtime_ns, info.st_size)
    except OSError:
        return None  # unreadable now (not cached: the next listing tries again)


@lru_cache(maxsize=256)
def _entry_of_version(path: Path, source: str, name: str, mtime_ns: int, size: int) -> CheckpointEntry | None:
    """_entry() of one file version: Predict lists every checkpoint on each rerun, and checking
    one builds its model on the meta device (12 checkpoints: 1.3 s a rerun on one core)."""
    try:
        # The full check short of loading (bounds, header vs a meta-device model): a crafted
        # file is skipped here, never built, so it cannot take the model picker down.
        meta = inspect_checkpoint(path)
        digest = file_sha256(path)
    except CheckpointError:
        return None  # damaged files are listed by the Compare page, not offered here (an OSError is raised: see _entry)
    accuracy = meta["metrics"].get("test_accuracy")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        accuracy = None
    shown = f"{accuracy:.2f}%" if accuracy is not None else "?"
    return CheckpointEntry(f"{name} · {meta['model']} · {shown} ({source})", path, source, meta["model"], accuracy, name, digest,
                           trained_on_photos(meta.get("config")))


def trained_on_photos(config) -> bool:
    """Whether a checkpoint's recorded settings mixed photos into training (`--photos` or
    `--synthetic-photos`). Photo augmentation alone is not counted: it changes the 28x28
    items but never shows the model a photo as Predict cuts it out."""
    if not isinstance(config, dict):
        return False  # an older or foreign checkpoint: nothing recorded
    photos, synthetic = config.get("photos"), config.get("synthetic_photos")
    return bool(isinstance(photos, str) and photos) or (isinstance(synthetic, int) and not isinstance(synthetic, bool) and synthetic > 0)


def list_checkpoints(store: RunStore | None = None, pretrained_dir: Path | None = None) -> list[CheckpointEntry]:
    """Pretrained first (most accurate first), then runs that saved weights (newest first).
    A file identical to one already listed (a copied run folder) is left out."""
    pretrained_dir = pretrained_dir or paths.pretrained_dir()
    entries = []
    if pretrained_dir.is_dir():
        shipped = [_entry(p / WEIGHTS_NAME, "pretrained", p.name) for p in sorted(pretrained_dir.iterdir()) if (p / WEIGHTS_NAME).is_file()]
        entries += sorted((e for e in shipped if e), key=lambda e: -(e.test_accuracy or 0))
    for record in (store or RunStore()).list():
        if record.weights is not None and record.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            entry = _entry(record.weights, "run", record.name)
            if entry:
                entries.append(entry)
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if entry.sha256 not in seen:
            seen.add(entry.sha256)
            unique.append(entry)
    return unique


class EntryKey(str):
    """A Compare entry's unique key, "<source>:<id>" (a run id, a shipped folder, a Table 1
    recipe). A str, so widgets, links and table cells take it as it is; built and read only
    here, never split by hand."""

    @classmethod
    def of(cls, source: Source | str, ident: str) -> EntryKey:
        return cls(f"{Source(source)}:{ident}")  # ValueError for an unknown source

    @property
    def source(self) -> Source:
        return Source(self.split(":", 1)[0])

    @property
    def ident(self) -> str:
        """The run id, shipped folder or Table 1 recipe."""
        return self.split(":", 1)[1]


@dataclass
class Comparable:
    """One entry of the Compare page, in one shape whatever its source."""

    key: EntryKey
    name: str
    source: Source
    status: str
    config: dict
    history: list[dict]
    weights: Path | None  # None: figures only (trained on another machine, weights not shipped)
    row: dict  # the flat table row (RunRecord.summary's columns)
    problems: list[str] = field(default_factory=list)
    table1: str = ""  # the report's Table 1 row this entry reproduces, if any

    @property
    def test_accuracy(self) -> float | None:
        return self.row.get("test_accuracy")

    @property
    def finished(self) -> bool:
        return self.status == RunStatus.FINISHED


def _from_record(record: RunRecord, source: Source) -> Comparable:
    name = record.id if source is Source.SHIPPED else record.name  # shipped models go by their folder, as on Predict
    row = {**record.summary(), "id": EntryKey.of(source, record.id), "name": name, "source": source.label}
    return Comparable(row["id"], name, source, record.status, record.config, record.history, record.weights, row, list(record.problems))


def _table1_label(row) -> str:
    return row.label if row.configuration == "No Patching" else f"{row.label}, {row.configuration.lower()}"


def _recipe_config(recipe: str) -> dict:
    try:
        return TrainConfig(**{**RECIPES[recipe], "name": recipe}).to_dict()
    except (KeyError, TypeError, ConfigError):
        return {"name": recipe}


def list_comparable(records: list[RunRecord] | None = None, pretrained_dir: Path | None = None, results_dir: Path | None = None) -> list[Comparable]:
    """Runs of this machine (`records`, default: the run store's; newest first), then the
    shipped models, then the reproduced Table 1 rows that neither holds. A Table 1 row
    whose run is here, or whose recipe a shipped model was trained with, is that entry
    (marked with the row) and not repeated."""
    records = RunStore().list() if records is None else records
    runs = [_from_record(record, Source.RUN) for record in records]
    shipped_store = RunStore(pretrained_dir or paths.pretrained_dir())
    shipped = [_from_record(record, Source.SHIPPED) for record in shipped_store.list()]
    entries = runs + shipped
    reproduced = read_table1_csv((results_dir or paths.results_dir()) / "table1.csv")
    labels = {row.recipe: _table1_label(row) for row in TABLE1}
    for recipe, result in reproduced.items():
        same = [e for e in runs if e.key == EntryKey.of(Source.RUN, str(result.get("run")))] or [e for e in shipped if e.config.get("name") == recipe]
        if same:
            same[0].table1 = labels[recipe]
            continue
        row = {
            "id": EntryKey.of(Source.TABLE1, recipe), "name": f"Table 1 · {labels[recipe]}", "status": result.get("status", ""), "source": Source.TABLE1.label,
            "model": RECIPES.get(recipe, {}).get("model"), "epochs_done": result.get("epochs_done"),
            "epochs_planned": RECIPES.get(recipe, {}).get("epochs"), "params": None,
            "train_accuracy": result.get("train_accuracy"), "test_accuracy": result.get("test_accuracy"),
            "best_test_accuracy": result.get("test_accuracy"), "train_loss_sum": result.get("train_loss_sum"), "seconds": result.get("seconds"),
        }
        config = _recipe_config(recipe)
        row.update({k: config.get(k) for k in ("optimizer", "lr", "batch_size", "patch", "init", "augment")})
        entries.append(Comparable(row["id"], row["name"], Source.TABLE1, row["status"], config, [], None, row, table1=labels[recipe]))
    return entries


def best_first(entries: list[Comparable]) -> list[Comparable]:
    """Finished entries, the most accurate first (by the last epoch's test accuracy)."""
    done = [e for e in entries if e.finished and e.test_accuracy is not None]
    return sorted(done, key=lambda e: -(e.test_accuracy or 0.0))  # None is filtered out above
