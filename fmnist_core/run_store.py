"""The run store: run folders on disk, read back as typed records.

A run is a folder `<root>/<id>/`:
    run.json        id, display name, creation time, and the sweep it belongs to, if any
    config.json     the TrainConfig
    history.jsonl   one line per finished epoch, appended and fsynced as it happens
    model.safetensors  the weights after the last finished epoch
    owner.json      the pid of the process training it
    result.json     written once, when the run ends (finished/stopped/diverged/failed/cancelled)
A folder without result.json whose owner process is gone was cut off by a crash or
restart: it reads back as "interrupted", with the epochs it completed.
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
from .checkpoint import WEIGHTS_NAME, atomic_write_json
from .config import TrainConfig
from .errors import UserError

ACTIVE = ("queued", "running")
ENDED = ("finished", "stopped", "diverged", "failed", "cancelled", "interrupted")


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
    sweep: str | None = None  # the id of the sweep this run is a trial of

    @property
    def weights(self) -> Path | None:
        path = self.path / WEIGHTS_NAME
        return path if path.is_file() else None

    def summary(self) -> dict:
        """One flat row for tables: the config's key settings and the run's figures."""
        last = self.history[-1] if self.history else {}
        result = self.result or {}
        return {
            "id": self.id, "name": self.name, "status": self.status, "created": self.created, "sweep": self.sweep,
            "model": self.config.get("model"), "optimizer": self.config.get("optimizer"),
            "lr": self.config.get("lr"), "batch_size": self.config.get("batch_size"),
            "epochs": f"{len(self.history)}/{self.config.get('epochs')}",
            "patch": self.config.get("patch"), "init": self.config.get("init"),
            "augment": self.config.get("augment"), "params": result.get("params"),
            "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": best_test_accuracy(self.history),
            "train_loss_sum": last.get("train_loss_sum"), "test_loss": last.get("test_loss"),
            "seconds": last.get("elapsed_s"), "images_per_s": _mean([h.get("images_per_s") for h in self.history]),
        }


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

    def create(self, config: TrainConfig, name: str = "", run_id: str | None = None, sweep: str | None = None) -> Path:
        """A new run folder (named `run_id`, or timestamp-model-random); an existing
        folder is only reused when empty. `sweep` tags the run as a trial of that sweep."""
        stamp = datetime.now(UTC)
        run_id = run_id or f"{stamp:%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(2)}"
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise UserError(f"{path} exists and is not empty; pick a new folder")
        info = {"id": run_id, "name": name or config.name or run_id, "created": stamp.isoformat(timespec="seconds")}
        atomic_write_json(path / "run.json", {**info, "sweep": sweep} if sweep else info)
        atomic_write_json(path / "config.json", config.to_dict())
        return path

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir() if (p / "config.json").is_file()), reverse=True)

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
        sweep = info.get("sweep") if isinstance(info.get("sweep"), str) else None
        return RunRecord(run_id, path, info.get("name", run_id), info.get("created", ""), config, history, result, status, problems, sweep)

    def list(self) -> list[RunRecord]:
        return [self.read(run_id) for run_id in self.ids()]

    def rename(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise UserError("a run name cannot be empty")
        path = self.root / run_id / "run.json"
        info = _read_json(path, [], {"id": run_id})
        atomic_write_json(path, {**info, "name": name[:100]})

    def view(self, run_id: str) -> RunView:
        """The stored run as a RunView (no progress or per-batch losses on disk)."""
        record = self.read(run_id)
        return RunView(run_id, record.status, (record.result or {}).get("message", ""), record.config, record.history)

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.root / run_id)

    def write_result(self, run_id: str, result: dict) -> None:
        atomic_write_json(self.root / run_id / "result.json", result)


def result_from(fit_status: str, message: str, history: list[dict], seconds: float, params: int | None) -> dict:
    last = history[-1] if history else {}
    return {
        "status": fit_status, "message": message, "epochs_done": len(history), "seconds": seconds,
        "params": params, "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"), "train_loss_sum": last.get("train_loss_sum"),
        "best_test_accuracy": best_test_accuracy(history),
    }
