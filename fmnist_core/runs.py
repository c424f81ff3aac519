"""Runs: the on-disk run store, and a process-wide manager that trains them one at a time.

A run is a folder `<root>/<id>/`:
    run.json        id, display name, creation time
    config.json     the TrainConfig
    history.jsonl   one line per finished epoch, appended and fsynced as it happens
    model.safetensors  the weights after the last finished epoch
    owner.json      the pid of the process training it
    result.json     written once, when the run ends (finished/stopped/diverged/failed/cancelled)
A folder without result.json whose owner process is gone was cut off by a crash or
restart: it reads back as "interrupted", with the epochs it completed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .checkpoint import WEIGHTS_NAME, atomic_write_json, save_checkpoint
from .config import TrainConfig
from .engine import fit
from .models import count_parameters

DEFAULT_ROOT = Path("checkpoints/runs")
ENDED = ("finished", "stopped", "diverged", "failed", "cancelled", "interrupted")
MAX_BATCH_POINTS = 2000  # per-batch losses kept in memory for the live chart


def default_root() -> Path:
    return Path(os.environ.get("FMNIST_RUNS_DIR", DEFAULT_ROOT))


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

    @property
    def weights(self) -> Path | None:
        path = self.path / WEIGHTS_NAME
        return path if path.is_file() else None

    def summary(self) -> dict:
        """One flat row for tables: the config's key settings and the run's figures."""
        last = self.history[-1] if self.history else {}
        result = self.result or {}
        return {
            "id": self.id, "name": self.name, "status": self.status, "created": self.created,
            "model": self.config.get("model"), "optimizer": self.config.get("optimizer"),
            "lr": self.config.get("lr"), "batch_size": self.config.get("batch_size"),
            "epochs": f"{len(self.history)}/{self.config.get('epochs')}",
            "patch": self.config.get("patch"), "init": self.config.get("init"),
            "augment": self.config.get("augment"), "params": result.get("params"),
            "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": max((h["test_accuracy"] for h in self.history), default=None),
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
        self.root = Path(root) if root is not None else default_root()

    def create(self, config: TrainConfig, name: str = "", run_id: str | None = None) -> Path:
        """A new run folder (named `run_id`, or timestamp-model-random); an existing
        folder is only reused when empty."""
        stamp = datetime.now(timezone.utc)
        run_id = run_id or f"{stamp:%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(2)}"
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise ValueError(f"{path} exists and is not empty; pick a new folder")
        atomic_write_json(path / "run.json", {"id": run_id, "name": name or config.name or run_id, "created": stamp.isoformat(timespec="seconds")})
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
        return RunRecord(run_id, path, info.get("name", run_id), info.get("created", ""), config, history, result, status, problems)

    def list(self) -> list[RunRecord]:
        return [self.read(run_id) for run_id in self.ids()]

    def rename(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a run name cannot be empty")
        path = self.root / run_id / "run.json"
        info = _read_json(path, [], {"id": run_id})
        atomic_write_json(path, {**info, "name": name[:100]})

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self.root / run_id)

    def write_result(self, run_id: str, result: dict) -> None:
        atomic_write_json(self.root / run_id / "result.json", result)


class RunWriter:
    """Engine callback that persists a run as it trains: nothing finished is ever lost."""

    def __init__(self, path: Path, config: TrainConfig):
        self.path, self.config = Path(path), config
        self.params = None

    def on_run_start(self, event: dict) -> None:
        self.params = event["params"]
        atomic_write_json(self.path / "owner.json", {"pid": os.getpid()})

    def on_checkpoint(self, model, record: dict) -> None:
        save_checkpoint(model, self.path / WEIGHTS_NAME, config=self.config.to_dict(), metrics=record)

    def on_epoch_end(self, record: dict) -> None:
        # Written after the weights, so a history line always has its checkpoint.
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def result_from(fit_status: str, message: str, history: list[dict], seconds: float, params: int | None) -> dict:
    last = history[-1] if history else {}
    return {
        "status": fit_status, "message": message, "epochs_done": len(history), "seconds": seconds,
        "params": params, "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"), "train_loss_sum": last.get("train_loss_sum"),
        "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
    }


def train_run(store: RunStore, run_id: str, config: TrainConfig, callbacks=(), stop=None, data=None) -> dict:
    """Train an already-created run folder and write its result; returns the result."""
    writer = RunWriter(store.root / run_id, config)
    outcome = fit(config, data=data, callbacks=[writer, *callbacks], stop=stop)
    result = result_from(outcome.status, outcome.message, outcome.history, outcome.seconds, count_parameters(outcome.model))
    store.write_result(run_id, result)
    return result


@dataclass
class LiveRun:
    """What a page needs to draw a run that is queued or training, kept under `lock`."""

    id: str
    config: TrainConfig
    status: str = "queued"
    message: str = ""
    history: list[dict] = field(default_factory=list)
    batch_losses: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCH_POINTS))  # (step, loss)
    progress: dict = field(default_factory=dict)  # the last batch event
    started: float | None = None
    ended: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # engine callbacks: called from the training thread, so they only write state.
    def on_run_start(self, event: dict) -> None:
        with self.lock:
            self.status, self.started = "running", time.time()
            self.progress = {"epoch": 0, "batch": 0, "batches": event["batches_per_epoch"], "progress": 0.0}

    def on_batch_end(self, event: dict) -> None:
        with self.lock:
            self.progress = event
            step = (event["epoch"] - 1) * event["batches"] + event["batch"]
            self.batch_losses.append((step, event["loss"]))

    def on_epoch_end(self, record: dict) -> None:
        with self.lock:
            self.history.append(record)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "id": self.id, "status": self.status, "message": self.message,
                "config": self.config.to_dict(), "history": list(self.history),
                "batch_losses": list(self.batch_losses), "progress": dict(self.progress),
                "started": self.started, "ended": self.ended,
            }


class RunManager:
    """Owns one worker thread that trains queued runs in order, so two runs never fight
    over the CPU cores. One per process (the app keeps it in st.cache_resource)."""

    def __init__(self, store: RunStore | None = None, data_loader=None):
        self.store = store or RunStore()
        self._data_loader = data_loader
        self._live: dict[str, LiveRun] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.Condition()
        self._worker: threading.Thread | None = None

    def submit(self, config: TrainConfig, name: str = "") -> str:
        """Validate, create the run folder and queue it; returns the run id."""
        config.validate()
        run_id = self.store.create(config, name).name
        with self._lock:
            self._live[run_id] = LiveRun(run_id, config)
            self._queue.append(run_id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="fmnist-trainer", daemon=True)
                self._worker.start()
            self._lock.notify_all()
        return run_id

    def stop(self, run_id: str) -> None:
        """Stop a running run (it keeps its finished epochs) or cancel a queued one."""
        with self._lock:
            live = self._live.get(run_id)
            if live is None:
                return
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._finish(live, "cancelled", "cancelled before it started")
                self.store.write_result(run_id, result_from("cancelled", live.message, [], 0.0, None))
            else:
                live.stop.set()

    def active_ids(self) -> set[str]:
        with self._lock:
            return {rid for rid, live in self._live.items() if live.status in ("queued", "running")}

    def live(self, run_id: str) -> dict | None:
        with self._lock:
            live = self._live.get(run_id)
        return live.snapshot() if live else None

    def view(self, run_id: str) -> dict:
        """The run in one shape whoever holds it: this manager's live snapshot ("live": True),
        else what the store reads from disk (no progress or per-batch losses there)."""
        live = self.live(run_id)
        if live is not None:
            return {**live, "live": True}
        record = self.store.read(run_id)
        return {"id": run_id, "status": record.status, "message": (record.result or {}).get("message", ""),
                "config": record.config, "history": record.history, "batch_losses": [], "progress": {},
                "started": None, "ended": None, "live": False}

    def queue_position(self, run_id: str) -> int | None:
        with self._lock:
            return list(self._queue).index(run_id) + 1 if run_id in self._queue else None

    def list_runs(self) -> list[RunRecord]:
        """Every run on disk; runs this manager is training carry their live status."""
        records = self.store.list()
        active = self.active_ids()
        for record in records:
            if record.id in active:
                record.status = self._live[record.id].status
        return records

    def delete(self, run_id: str) -> None:
        if run_id in self.active_ids():
            raise ValueError("stop this run before deleting it")
        self.store.delete(run_id)
        with self._lock:
            self._live.pop(run_id, None)

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Block until nothing is queued or running (for the CLI and tests)."""
        deadline = time.time() + timeout
        while self.active_ids():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _finish(self, live: LiveRun, status: str, message: str) -> None:
        with live.lock:
            live.status, live.message, live.ended = status, message, time.time()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._lock.wait()
                live = self._live[self._queue.popleft()]
            self._train(live)

    def _train(self, live: LiveRun) -> None:
        try:
            data = self._data_loader() if self._data_loader else None
            result = train_run(self.store, live.id, live.config, callbacks=[live], stop=live.stop, data=data)
            self._finish(live, result["status"], result["message"])
        except Exception as e:  # noqa: BLE001 - any failure must end as a visible 'failed' run
            message = _failure_message(e)
            with live.lock:
                history = list(live.history)
            self.store.write_result(live.id, result_from("failed", message, history, 0.0, None))
            self._finish(live, "failed", message)
            traceback.print_exc()


def _failure_message(error: Exception) -> str:
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "out of memory: try a smaller batch size or a smaller model"
    return f"{type(error).__name__}: {error}"
