"""The run store: run folders on disk, read back as typed records.

A run is a folder `<root>/<id>/`:
    run.json        id, display name, creation time, owner (who may stop, rename or delete it)
    config.json     the TrainConfig
    history.jsonl   one line per finished epoch, appended and fsynced as it happens
    batch_losses.jsonl  {"total_steps": N}, then {"step", "loss"} lines: the per-batch loss
                    chart, downsampled to at most ~2000 points
    model.safetensors  the weights after the last finished epoch
    owner.json      the pid of the process training it
    result.json     written once, when the run ends (finished/stopped/diverged/failed/cancelled)
A folder without result.json whose owner process is gone was cut off by a crash or
restart: it reads back as "interrupted", with the epochs it completed.
Deleting moves a run to `<root>/.trash/<id>/` (restorable until the trash is emptied);
ids() and list() never look inside the trash.
Training a run into its folder is `run_manager.train_run`; this module never trains.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import paths
from .access import LOCAL_OWNER
from .checkpoint import WEIGHTS_NAME, atomic_write_json
from .config import SETTINGS, ConfigError, TrainConfig
from .errors import UserError

ACTIVE = ("queued", "running")
ENDED = ("finished", "stopped", "diverged", "failed", "cancelled", "interrupted")
BATCH_LOSSES_NAME = "batch_losses.jsonl"
TRASH_DIR = ".trash"  # under the store's root; the leading dot keeps it apart from run ids


def best_test_accuracy(history: list[dict]) -> float | None:
    """The highest per-epoch test accuracy of a run (None before its first epoch)."""
    return max((h["test_accuracy"] for h in history), default=None)


@dataclass
class RunView:
    """A run as a page draws it, in one shape whether a manager in this process is
    training it (`live`: with progress and per-batch losses) or it is read from disk."""

    id: str
    status: str
    message: str
    config: dict
    history: list[dict]
    batch_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    progress: dict = field(default_factory=dict)  # the last batch event
    started: float | None = None
    ended: float | None = None
    live: bool = False
    total_steps: int | None = None  # batches in the whole run (the per-batch chart's x-axis)


@dataclass
class RunRecord:
    """A run as read back from disk (plus live status when a manager is training it)."""

    id: str
    path: Path
    name: str
    created: str
    config: dict
    history: list[dict]
    result: dict | None
    status: str
    problems: list[str] = field(default_factory=list)  # damaged files, shown as warnings
    owner: str = ""  # access.Visitor.id of who started it; "" for runs from before owners

    @property
    def weights(self) -> Path | None:
        path = self.path / WEIGHTS_NAME
        return path if path.is_file() else None

    def summary(self) -> dict:
        """One flat row for tables: the config's key settings and the run's figures, each
        as a number (or None when unknown), never as text, so a CSV keeps its types."""
        last = self.history[-1] if self.history else {}
        result = self.result or {}
        return {
            "id": self.id, "name": self.name, "status": self.status, "created": self.created,
            "model": self.config.get("model"), "optimizer": self.config.get("optimizer"),
            "lr": self.config.get("lr"), "batch_size": self.config.get("batch_size"),
            "epochs_done": len(self.history), "epochs_planned": _int_or_none(self.config.get("epochs")),
            "patch": self.config.get("patch"), "init": self.config.get("init"),
            "augment": self.config.get("augment"), "params": _int_or_none(result.get("params")),
            "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": best_test_accuracy(self.history),
            "train_loss_sum": last.get("train_loss_sum"), "test_loss": last.get("test_loss"),
            "seconds": last.get("elapsed_s"), "images_per_s": _mean([h.get("images_per_s") for h in self.history]),
        }


def _int_or_none(value) -> int | None:
    """A count read from JSON (an int, or a float such as 35044.0 from older files)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(value)


def _alive_elsewhere(pid) -> bool:
    """Is `pid` a live process other than this one? (A run trained by the CLI while the
    app is open is running, not interrupted; this process's own runs are tracked live.)"""
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _read_json(path: Path, problems: list[str], default):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as e:
        problems.append(f"{path.name} is damaged ({e})")
        return default


class RunStore:
    """Reads and writes run folders under `root`."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else paths.runs_dir()

    def create(self, config: TrainConfig, name: str = "", run_id: str | None = None, owner: str = LOCAL_OWNER) -> Path:
        """A new run folder (named `run_id`, or timestamp-model-random) owned by `owner`;
        an existing folder is only reused when empty."""
        stamp = datetime.now(UTC)
        run_id = run_id or f"{stamp:%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(2)}"
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise UserError(f"{path} exists and is not empty; pick a new folder")
        atomic_write_json(path / "run.json", {"id": run_id, "name": name or config.name or run_id, "created": stamp.isoformat(timespec="seconds"), "owner": owner})
        atomic_write_json(path / "config.json", config.to_dict())
        return path

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / "config.json").is_file()),
                      reverse=True)

    def read(self, run_id: str) -> RunRecord:
        path = self.root / run_id
        problems: list[str] = []
        info = _read_json(path / "run.json", problems, {})
        config = _read_json(path / "config.json", problems, {})
        result = _read_json(path / "result.json", problems, None)
        history = []
        try:
            for line in (path / "history.jsonl").read_text().splitlines():
                try:
                    history.append(json.loads(line))
                except ValueError:
                    # A line cut off by a crash mid-write: keep the epochs before it.
                    problems.append("history.jsonl has a damaged line (kept the epochs before it)")
                    break
        except FileNotFoundError:
            pass
        if isinstance(result, dict):
            status = result.get("status", "failed")
        else:
            owner = _read_json(path / "owner.json", [], {})
            status = "running" if _alive_elsewhere(owner.get("pid")) else "interrupted"
        owner = info.get("owner")
        return RunRecord(run_id, path, info.get("name", run_id), info.get("created", ""), config, history, result, status, problems,
                         owner=owner if isinstance(owner, str) else "")

    def list(self) -> list[RunRecord]:
        return [self.read(run_id) for run_id in self.ids()]

    def rename(self, run_id: str, name: str) -> None:
        """Give a run a new display name, under the same rule as the form's Run name."""
        name = name.strip()
        if not name:
            raise UserError("a run name cannot be empty")
        try:
            SETTINGS["name"].check("name", name)  # the one length cap: config.MAX_NAME_LENGTH
        except ConfigError as e:
            raise UserError(f"this name {e.message}") from None
        path = self.root / run_id / "run.json"
        info = _read_json(path, [], {"id": run_id})
        atomic_write_json(path, {**info, "name": name})

    def view(self, run_id: str) -> RunView:
        """The stored run as a RunView (no progress or per-batch losses on disk)."""
        record = self.read(run_id)
        points, total_steps = read_batch_losses(self.root / run_id / BATCH_LOSSES_NAME)
        return RunView(run_id, record.status, (record.result or {}).get("message", ""), record.config, record.history,
                       batch_losses=points, total_steps=total_steps)

    def delete(self, run_id: str) -> None:
        """Remove a run for good (the page moves runs to the trash instead)."""
        shutil.rmtree(self.root / run_id)

    # ---- the trash: deleted runs stay restorable until it is emptied --------------------

    @property
    def trash_root(self) -> Path:
        return self.root / TRASH_DIR

    def trash(self, run_id: str) -> None:
        """Move a run to the trash (one rename on the same file system: nothing is copied)."""
        source = self.root / run_id
        if not (source / "config.json").is_file():
            raise UserError(f"there is no run '{run_id}' to delete")
        self.trash_root.mkdir(parents=True, exist_ok=True)
        target = self.trash_root / run_id
        if target.exists():  # an older copy with the same id: the newer one wins
            shutil.rmtree(target)
        source.rename(target)

    def trashed(self) -> list[RunRecord]:
        """The runs in the trash, newest first."""
        return RunStore(self.trash_root).list()

    def restore(self, run_id: str) -> None:
        """Bring a run back from the trash; refused when a run with its id exists again."""
        source = self.trash_root / run_id
        if not (source / "config.json").is_file():
            raise UserError(f"run '{run_id}' is not in the trash")
        if (self.root / run_id).exists():
            raise UserError(f"a run '{run_id}' already exists; delete or rename it before restoring this one")
        source.rename(self.root / run_id)

    def empty_trash(self) -> int:
        """Delete every run in the trash for good; returns how many there were."""
        ids = self.trashed_ids()
        for run_id in ids:
            shutil.rmtree(self.trash_root / run_id)
        return len(ids)

    def trashed_ids(self) -> list[str]:
        return RunStore(self.trash_root).ids()

    def write_result(self, run_id: str, result: dict) -> None:
        atomic_write_json(self.root / run_id / "result.json", result)


def read_batch_losses(path: Path) -> tuple[list[tuple[int, float]], int | None]:
    """(step, loss) points and the run's total steps from batch_losses.jsonl; lines that are
    damaged or of the wrong shape are skipped (it only feeds a chart)."""
    points, total = [], None
    try:
        lines = path.read_text().splitlines()
    except (OSError, ValueError):
        return points, total
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("total_steps"), int):
            total = item["total_steps"]
        elif isinstance(item.get("step"), int) and isinstance(item.get("loss"), (int, float)):
            points.append((item["step"], float(item["loss"])))
    return points, total


def result_from(fit_status: str, message: str, history: list[dict], seconds: float, params: int | None) -> dict:
    last = history[-1] if history else {}
    return {
        "status": fit_status, "message": message, "epochs_done": len(history), "seconds": seconds,
        "params": params, "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"), "train_loss_sum": last.get("train_loss_sum"),
        "best_test_accuracy": best_test_accuracy(history),
    }
