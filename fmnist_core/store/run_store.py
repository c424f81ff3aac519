"""The run store: run folders on disk, read back as typed records.

A run is a folder `<root>/<id>/`:
    run.json        id, display name, creation time, owner (who may stop, rename or delete it),
                    and the sweep it is a trial of, if any
    config.json     the TrainConfig
    history.jsonl   one line per finished epoch, appended and fsynced as it happens
    batch_losses.jsonl  {"total_steps": N}, then {"step", "loss"} lines: the per-batch loss
                    chart, downsampled to at most ~2000 points; a resumed run rewrites it
                    with its finished epochs' points and goes on appending after them
    model.safetensors  the weights after the last finished epoch
    owner.json      the pid, start time and host of the process training it; with "starting": true
                    while that process prepares the run (a sweep's trial loads its data and
                    builds its model in a Ray worker): the run reads "starting", not
                    "interrupted", until its first batch, and "interrupted" if that process dies.
                    A Train-page run on a Ray cluster (remote_runs) also names its actor
                    ("ray_actor") and node: on another host its pid says nothing here, so
                    it reads as training until the app, which asks the cluster, settles it
    queued.json     present while the run waits in a queue (the queue is on disk: a
                    restarted RunManager queues these runs again)
    resume.safetensors  what resuming after the last finished epoch needs (resume.py)
    stop.json       asks a sweep's trial, trained in a Ray worker, to stop (StopRequest)
    result.json     written once, when the run ends (finished/stopped/diverged/failed/cancelled)
A folder without result.json whose owner process is gone was cut off by a crash or
restart: it reads back as "interrupted", with the epochs it completed.
Deleting moves a run to `<root>/.trash/<id>/` (restorable until the trash is emptied);
ids() and list() never look inside the trash.
Training a run into its folder is `run_manager.train_run`; this module never trains.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fmnist_core.base import paths
from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_json, process_alive, this_process
from fmnist_core.base.statuses import RunStatus
from fmnist_core.formats.checkpoint import WEIGHTS_NAME, CheckpointError, read_metadata
from fmnist_core.formats.run_files import (
    HISTORY_LINE,
    OWNER,
    RESULT,
    RUN_INFO,
    FileProblem,
    check_shape,
    is_regular_file,
    read_config_file,
    read_history_file,
    read_json_file,
    read_regular_tail,
    read_regular_text,
)
from fmnist_core.modeling.config import SETTINGS, ConfigError, TrainConfig
from fmnist_core.store.access import LOCAL_OWNER

log = logging.getLogger(__name__)
_TIDY_LOCK = threading.Lock()

QUEUED_NAME = "queued.json"
STOP_NAME = "stop.json"  # asks the process that trains a run elsewhere (a sweep's trial) to stop it
BATCH_LOSSES_NAME = "batch_losses.jsonl"
MAX_BATCH_LOSSES_BYTES = 1 << 20  # ~2000 points are ~60 KB; beyond this only the newest are read
# A temp file nobody has written for this long belongs to a save that was killed: an atomic
# write of the largest weights takes seconds.
STALE_TEMP_SECONDS = 600
TRASH_DIR = ".trash"  # under the store's root; the leading dot keeps it apart from run ids


def best_test_accuracy(history: list[dict]) -> float | None:
    """The highest per-epoch test accuracy of a run (None before its first epoch)."""
    return max((h["test_accuracy"] for h in history), default=None)


@dataclass
class RunView:
    """A run as a page draws it, in one shape whether a manager in this process is
    training it (`live`: with progress and per-batch losses) or it is read from disk."""

    id: str
    status: RunStatus
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
    status: RunStatus
    problems: list[str] = field(default_factory=list)  # damaged files, shown as warnings
    owner: str = ""  # access.Visitor.id of who started it; "" for runs from before owners
    sweep: str | None = None  # the id of the sweep this run is a trial of

    @property
    def weights(self) -> Path | None:
        path = self.path / WEIGHTS_NAME
        return path if is_regular_file(path) and not os.path.islink(self.path) else None

    def summary(self) -> dict:
        """One flat row for tables: the config's key settings and the run's figures, each
        as a number (or None when unknown), never as text, so a CSV keeps its types."""
        last = self.history[-1] if self.history else {}
        result = self.result or {}
        return {
            "id": self.id, "name": self.name, "status": self.status, "created": self.created, "sweep": self.sweep,
            "model": self.config.get("model"), "optimizer": self.config.get("optimizer"),
            "lr": self.config.get("lr"), "batch_size": self.config.get("batch_size"),
            "epochs_done": len(self.history), "epochs_planned": _int_or_none(self.config.get("epochs")),
            "patch": self.config.get("patch"), "init": self.config.get("init"),
            "augment": self.config.get("augment"), "params": _int_or_none(result.get("params")),
            "train_accuracy": last.get("train_accuracy"), "test_accuracy": last.get("test_accuracy"),
            "best_test_accuracy": best_test_accuracy(self.history),
            "train_loss_sum": last.get("train_loss_sum"), "test_loss": last.get("test_loss"),
            "seconds": last.get("elapsed_s"), "images_per_s": _mean([h.get("images_per_s") for h in self.history]),
            "threads": result.get("threads"), "precision": result.get("precision"),
        }


def _int_or_none(value) -> int | None:
    """A count read from JSON (an int, or a float such as 35044.0 from older files)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(value)


HOST = socket.gethostname()


def owner_record(starting: bool = False, **extra: str) -> dict:
    """What owner.json records about the process training a run (`starting`: it has claimed
    the run and prepares it; RunWriter drops the flag when training starts); `extra`: a
    remote run's Ray identity (ray_actor, ray_node)."""
    record = {**this_process(), "host": HOST, **extra}
    return {**record, "starting": True} if starting else record


def owner_alive(owner: dict | None) -> bool:
    """Whether the process in owner.json still trains the run, as far as this host can tell:
    a run on a Ray cluster's other host counts as alive (the cluster, not a pid, says; the
    app that asks it settles a run whose actor is gone)."""
    if owner is not None and owner.get("ray_actor") and owner.get("host", HOST) != HOST:
        return True
    return process_alive(owner)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _read(problems: list[str], reader, *args, default=None):
    """Run one run_files reader: a FileProblem becomes a line in `problems`, never an exception."""
    try:
        value = reader(*args)
    except FileProblem as e:
        problems.append(str(e))
        return default
    return default if value is None else value


def _checkpoint_epoch(path: Path, problems: list[str]) -> tuple[int | None, dict]:
    """The epoch (and its metrics) that the run's weights file says it holds."""
    if not is_regular_file(path):
        return None, {}
    try:
        metrics = _checkpoint_metrics(str(path), os.stat(path).st_mtime_ns)
    except CheckpointError as e:
        problems.append(f"{path.name}: {str(e).replace(str(path), 'the file')}")
        return None, {}
    epoch = metrics.get("epoch")
    return (epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None), metrics


@functools.lru_cache(maxsize=256)
def _checkpoint_metrics(path: str, mtime_ns: int) -> dict:
    return read_metadata(path)["metrics"]  # the header only; cached per file version


class RunStore:
    """Reads and writes run folders under `root`. `clock` gives the time a new run is created
    at (its id starts with it, to the second, so ids sort by age); tests pass a clock they
    advance instead of sleeping."""

    def __init__(self, root: Path | str | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.root = Path(root) if root is not None else paths.runs_dir()
        self.clock = clock

    def create(self, config: TrainConfig, name: str = "", run_id: str | None = None, owner: str = LOCAL_OWNER,
               sweep: str | None = None, claim: bool = False) -> Path:
        """A new run folder (named `run_id`, or timestamp-model-random) owned by `owner`, a
        trial of `sweep` if given; an existing folder is only reused when empty. `claim`: this
        process will train it, and says so (owner.json, "starting") before the folder is listed,
        so that it never reads as interrupted while it is prepared. Any failure (a file in the
        way, a name too long, a read-only or full disk) is one UserError and leaves nothing behind."""
        stamp = self.clock()
        run_id = run_id or f"{stamp:%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(2)}"
        path = self.root / run_id
        created = make_folder(path)
        if not created and any(path.iterdir()):
            raise UserError(f"{path} exists and is not empty; pick a new folder")
        try:
            if claim:  # before run.json: the folder is listed from then on, and already claimed
                atomic_write_json(path / "owner.json", owner_record(starting=True))
            info = {"id": run_id, "name": name or config.name or run_id, "created": stamp.isoformat(timespec="seconds"), "owner": owner}
            atomic_write_json(path / "run.json", {**info, "sweep": sweep} if sweep else info)
            atomic_write_json(path / "config.json", config.to_dict())
        except OSError as e:
            for written in ("owner.json", "run.json", "config.json"):
                (path / written).unlink(missing_ok=True)
            for folder in reversed(created):
                folder.rmdir()
            raise UserError(f"cannot write the run folder {path}: {e.strerror or e}") from e
        return path

    def ids(self) -> list[str]:
        """Run folders, newest first. Symlinks are skipped (a link could point anywhere,
        and rename or delete would act there); hidden folders belong to the store."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in os.scandir(self.root):
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                log.warning("run store %s: %s is a symbolic link, not a run folder; ignored", self.root, entry.name)
                continue
            if entry.is_dir(follow_symlinks=False) and _holds_run_files(Path(entry.path)):
                found.append(entry.name)
        return sorted(found, reverse=True)

    def read(self, run_id: str) -> RunRecord:
        """The run as stored. Never raises on a bad file: each one is a line in `problems`
        and the run is shown with what could be read."""
        path = self.root / run_id
        problems: list[str] = []
        if os.path.islink(path):
            return RunRecord(run_id, path, run_id, "", {}, [], None, RunStatus.INTERRUPTED, ["the run folder is a symbolic link; ignored"])
        info = _read(problems, read_json_file, path / "run.json", RUN_INFO, default={})
        config, config_problems = _read(problems, read_config_file, path / "config.json", default=({}, []))
        problems += config_problems
        result = _read(problems, read_json_file, path / "result.json", RESULT)
        before = len(problems)
        history, history_problems = _read(problems, read_history_file, path / "history.jsonl", default=([], []))
        problems += history_problems
        history_ok = len(problems) == before  # readable, of the right shape, in sequence
        owner = _read(problems, read_json_file, path / "owner.json", OWNER)
        alive = owner_alive(owner)
        if result is not None:
            status = RunStatus(result["status"])  # one of them: the result schema checks it
        elif is_regular_file(path / QUEUED_NAME):
            status = RunStatus.QUEUED
        elif alive and owner.get("starting"):
            status = RunStatus.STARTING  # claimed by a live process that prepares it (RunStore.create(claim=True))
        elif alive and owner["pid"] != os.getpid():
            status = RunStatus.RUNNING
        else:
            status = RunStatus.INTERRUPTED
        weights = path / WEIGHTS_NAME
        if os.path.lexists(weights) and not is_regular_file(weights):
            problems.append(f"{WEIGHTS_NAME} is not a regular file; ignored")
        elif status != RunStatus.QUEUED and (result is not None or (owner is not None and not alive)):
            # The run has ended, or the process that trained it is gone and nobody has
            # claimed it since: what a kill left behind can be tidied without racing a writer.
            with _TIDY_LOCK:  # two sessions reading the run at once must not both append
                _remove_temp_files(path)
                if history_ok:
                    history, _ = _read(problems, read_history_file, path / "history.jsonl", default=([], []))
                    history = _reconcile_history(path, history, problems)
        elif status == RunStatus.INTERRUPTED and owner is None:
            # Never claimed by a trainer (a kill while its folder was created, or before it
            # started): no writer to race but the one creating it, so only old temp files go.
            with _TIDY_LOCK:
                _remove_temp_files(path, older_than=STALE_TEMP_SECONDS)
                with contextlib.suppress(OSError):  # a creation killed before any file: nothing left to show
                    path.rmdir()  # only ever removes an empty folder
        if not any(os.path.lexists(path / name) for name in ("run.json", "config.json")):
            problems.append("run.json and config.json are missing (its creation was cut off); delete it")
        name = info.get("name") or run_id
        return RunRecord(run_id, path, name, info.get("created", ""), config or {}, history, result, status, problems,
                         owner=info.get("owner") or "", sweep=info.get("sweep"))

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
        folder = self.root / run_id
        if os.path.islink(folder) or not folder.is_dir():
            raise UserError(f"run {run_id} is not a run folder of this store; nothing was renamed")
        path = folder / "run.json"
        info = _read([], read_json_file, path, RUN_INFO, default={"id": run_id})
        # atomic_write_json renames a new file over run.json: a symlink there is replaced,
        # never written through.
        atomic_write_json(path, {**info, "name": name})

    def settled_history(self, run_id: str) -> builtins.list[dict]:
        """The history of a run whose training just failed in this process, made to agree
        with its weights first (a failure between saving them and the history line, e.g. a
        full disk while the resume state was saved): what its result.json must count."""
        path = self.root / run_id
        with _TIDY_LOCK:
            history, _ = _read([], read_history_file, path / "history.jsonl", default=([], []))
            return _reconcile_history(path, history, [])

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
        if os.path.islink(source) or not source.is_dir() or not _holds_run_files(source):
            raise UserError(f"there is no run '{run_id}' to delete")
        self.trash_root.mkdir(parents=True, exist_ok=True)
        target = self.trash_root / run_id
        if target.exists():  # an older copy with the same id: the newer one wins
            shutil.rmtree(target)
        source.rename(target)

    def trashed(self) -> builtins.list[RunRecord]:
        """The runs in the trash, newest first."""
        return RunStore(self.trash_root).list()

    def restore(self, run_id: str) -> None:
        """Bring a run back from the trash; refused when a run with its id exists again."""
        source = self.trash_root / run_id
        if os.path.islink(source) or not source.is_dir() or not _holds_run_files(source):
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

    def trashed_ids(self) -> builtins.list[str]:
        return RunStore(self.trash_root).ids()

    def write_result(self, run_id: str, result: dict) -> None:
        atomic_write_json(self.root / run_id / "result.json", result)

    def request_stop(self, run_id: str, cancel: bool = False) -> None:
        """Ask the process training this run elsewhere (a sweep's trial, watching a
        StopRequest) to stop it after the batch in progress; finished epochs stay. `cancel`:
        asked while it was still starting, so a trial that ends with no epoch is cancelled."""
        atomic_write_json(self.root / run_id / STOP_NAME, {"since": datetime.now(UTC).isoformat(timespec="seconds"), "cancel": cancel})

    def cancel_requested(self, run_id: str) -> bool:
        """Whether the run's stop request (request_stop) was a Cancel."""
        try:
            values = json.loads(read_regular_text(self.root / run_id / STOP_NAME) or "{}")
        except (FileProblem, OSError, ValueError):  # a read error mid-file: no Cancel seen
            return False
        return isinstance(values, dict) and values.get("cancel") is True

    def queued_at(self, run_id: str) -> int:
        """When the run was put in its queue (ns since the epoch, from the marker's `since`, by
        the store's clock; 0 if it is not waiting): the queue's order after a restart. `created`
        is in whole seconds, and two runs queued in one second would otherwise be taken in the
        order of their ids' random part. A marker without a readable `since` (older, or damaged)
        gives its file's time."""
        marker = self.root / run_id / QUEUED_NAME
        try:
            at = datetime.fromisoformat(json.loads(read_regular_text(marker) or "{}")["since"])
            if at.tzinfo is not None:
                return round(at.timestamp() * 1_000_000) * 1000
        except (FileProblem, OSError, ValueError, TypeError, KeyError):
            pass
        try:
            return os.stat(marker, follow_symlinks=False).st_mtime_ns
        except OSError:
            return 0

    def mark_queued(self, run_id: str, queued: bool = True) -> None:
        """Record on disk that the run waits in a queue (or no longer does), and since when."""
        marker = self.root / run_id / QUEUED_NAME
        if queued:
            atomic_write_json(marker, {"since": self.clock().isoformat(timespec="microseconds")})
        else:
            marker.unlink(missing_ok=True)


class StopRequest:
    """The stop flag of a run trained in another process than the one that may stop it:
    set once `<run>/stop.json` exists (RunStore.request_stop). The engine asks every batch;
    the file is looked at twice a second at most."""

    CHECK_EVERY_S = 0.5

    def __init__(self, folder: Path):
        self.path = Path(folder) / STOP_NAME
        self._set, self._next_check = False, 0.0

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now >= self._next_check:
            self._set, self._next_check = os.path.lexists(self.path), now + self.CHECK_EVERY_S
        return self._set

    def set(self) -> None:
        self._set = True


def read_batch_losses(path: Path) -> tuple[list[tuple[int, float]], int | None]:
    """(step, loss) points and the run's total steps from batch_losses.jsonl; lines that are
    damaged or of the wrong shape are skipped (it only feeds a chart)."""
    points: list[tuple[int, float]] = []
    total: int | None = None
    try:
        # Its first line holds the total; the points are the last ones (the file is ~100 KB,
        # a resumed run's too, as resuming rewrites it; but a planted one could be anything).
        found = read_regular_tail(path, MAX_BATCH_LOSSES_BYTES)
    except FileProblem:
        return points, total
    if found is None:
        return points, total
    head, tail = found
    for line in [head, *tail.splitlines()]:
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
        **({"photo_accuracy": last["photo_accuracy"]} if "photo_accuracy" in last else {}),
    }


def _is_temp_file(name: str) -> bool:
    """A checkpoint.atomic_write_bytes temp file: `.<name>.<random>.tmp`."""
    return name.startswith(".") and name.endswith(".tmp")


def _holds_run_files(folder: Path) -> bool:
    """A run folder: it has run.json or config.json, or the temp file of one (a creation
    killed before its rename: listed, so that it can be seen and tidied)."""
    if any(os.path.lexists(folder / name) for name in ("config.json", "run.json")):
        return True
    try:
        return any(_is_temp_file(name) and name.startswith((".run.json.", ".config.json.")) for name in os.listdir(folder))
    except OSError:
        return False


def _remove_temp_files(folder: Path, older_than: float | None = None) -> None:
    """Delete the temp files of a save that was killed before its rename
    (`.model.safetensors.*.tmp`, `.result.json.*.tmp`): they are never read, only take space.
    `older_than` (seconds): only those not written for that long."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if _is_temp_file(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                if older_than is not None and now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not remove %s: %s", entry.path, e)


def _reconcile_history(folder: Path, history: list[dict], problems: list[str]) -> list[dict]:
    """Make history.jsonl agree with the weights. Each epoch saves the weights, then appends
    its history line; a kill between the two leaves the weights one epoch ahead, and their
    metadata holds that epoch's line, which is appended here."""
    epoch, metrics = _checkpoint_epoch(folder / WEIGHTS_NAME, problems)
    if epoch is None or epoch == len(history):
        return history
    if epoch == len(history) + 1:
        try:
            line = check_shape("the checkpoint's metrics", metrics, HISTORY_LINE)
        except FileProblem:
            line = None
        if line is not None and _append_line(folder / "history.jsonl", line):
            return [*history, line]
    problems.append(f"{WEIGHTS_NAME} holds epoch {epoch} but history.jsonl has {len(history)} epoch(s)")
    return history


def _append_line(path: Path, record: dict) -> bool:
    """Append one JSON line (never through a symlink); False when it cannot be written."""
    try:
        # O_NONBLOCK: a FIFO put there since the read fails here instead of blocking
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
        with os.fdopen(fd, "a") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return False
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError as e:
        log.warning("could not repair %s: %s", path, e)
        return False


def make_folder(path: Path) -> list[Path]:
    """Create `path` and its missing parents; returns the folders created, outermost first.
    Checked before anything is made, so a bad path (under a file, a name longer than the
    file system allows, a read-only place) creates nothing and is one clear UserError."""
    path = Path(os.path.abspath(path))
    missing = []
    ancestor = path
    while not os.path.lexists(ancestor):
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        where = "is" if ancestor == path else f"is under {ancestor}, which is"
        raise UserError(f"{path} {where} a file, not a folder; pick a new folder")
    limit = os.pathconf(ancestor, "PC_NAME_MAX")
    for folder in missing:
        if len(os.fsencode(folder.name)) > limit:
            raise UserError(f"the folder name '{folder.name[:20]}...' is {len(folder.name)} characters long; this file system allows {limit}")
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    except OSError as e:
        for folder in reversed(created):
            folder.rmdir()
        raise UserError(f"cannot create {path}: {e.strerror or e}") from e
    return created
