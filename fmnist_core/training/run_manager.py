"""The run manager: one per process, trains queued runs one at a time in a worker thread.

The app keeps one in st.cache_resource; the CLI trains a single run with `train_run`.
Pages read runs through `RunManager.view`, a RunView whether the run is live here or
only on disk. The queue is on disk too (queued.json in each waiting run's folder), so a
new manager, after a restart, queues those runs again. One server per run store.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_core.analysis.metrics import store_analysis
from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_bytes, atomic_write_json, crash_point
from fmnist_core.base.statuses import ACTIVE, RESUMABLE, RunStatus
from fmnist_core.formats.checkpoint import WEIGHTS_NAME, save_checkpoint
from fmnist_core.formats.run_files import FileProblem, is_regular_file, read_config_file
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import count_parameters
from fmnist_core.store.access import Policy, Visitor
from fmnist_core.store.run_store import BATCH_LOSSES_NAME, QUEUED_NAME, RunRecord, RunStore, RunView, owner_record, read_batch_losses, result_from
from fmnist_core.training.engine import fit
from fmnist_core.training.resume import RESUME_NAME, ResumeState, load_resume, save_resume

# Cores an automatic-threads run in the app leaves free: the Streamlit server and the
# visitor's browser need one, or the page stalls while the model trains.
APP_CORES = 1
# The trainer thread's CPU priority (a nice value) below the server's page scripts: when a
# visitor opens a page, the script gets the core at once, and training has all the rest.
# Linux keeps a nice value per thread, and threads started from it inherit it.
TRAINER_NICENESS = 10
MAX_BATCH_POINTS = 2000  # per-batch losses kept per run, in memory and in batch_losses.jsonl


class BatchLossSampler:
    """Which per-batch losses a run keeps: at most one every total/MAX_BATCH_POINTS steps, so a
    long run keeps points spread over all of it (at most MAX_BATCH_POINTS + 1) rather than
    only its latest ones."""

    def __init__(self, total_steps: int):
        self.stride = max(1, -(-total_steps // MAX_BATCH_POINTS))
        self.next_step = 0

    def keep(self, step: int) -> bool:
        if step < self.next_step:
            return False
        self.next_step = step + self.stride
        return True

    def resume_after(self, points: list[tuple[int, float]]) -> None:
        """Go on after the points a resumed run keeps, as if it had kept them itself."""
        if points:
            self.next_step = points[-1][0] + self.stride


def points_before_resume(points, resumed_epoch: int, batches_per_epoch: int) -> list[tuple[int, float]]:
    """The per-batch points a run resumed after `resumed_epoch` keeps: those of its finished
    epochs, each step once and in order. The stopped epoch's points go: it is trained again
    from its first batch, and its new points follow these on the same x-axis."""
    last = resumed_epoch * batches_per_epoch
    return sorted(dict((step, loss) for step, loss in points if step <= last).items())


def batch_step(event: dict) -> int:
    """The run-wide batch number of an on_batch_end event (1 = the first batch)."""
    return (event["epoch"] - 1) * event["batches"] + event["batch"]


class RunWriter:
    """Engine callback that persists a run as it trains: nothing finished is ever lost."""

    def __init__(self, path: Path, config: TrainConfig, resumed_epoch: int = 0, owner_extra: dict | None = None):
        self.path, self.config = Path(path), config
        self.resumed_epoch = resumed_epoch  # the epoch a resumed run goes on after (0: a new run)
        self.owner_extra = owner_extra or {}  # a remote run's Ray identity, kept in owner.json
        self.params = None
        self.batch_losses: BatchLossSampler | None = None
        self.test_scores = None  # the last saved epoch's test-set probabilities

    def on_run_start(self, event: dict) -> None:
        self.params = event["params"]
        atomic_write_json(self.path / "owner.json", owner_record(**self.owner_extra))
        (self.path / QUEUED_NAME).unlink(missing_ok=True)
        total = event["epochs"] * event["batches_per_epoch"]
        self.batch_losses = BatchLossSampler(total)
        if not self.resumed_epoch:
            self._append(BATCH_LOSSES_NAME, {"total_steps": total})  # the chart's x-axis, known before any point
            return
        # Resumed: the chart keeps the finished epochs' points and goes on after them. The file
        # is rewritten (atomically) with one header and those points, so it stays as small as an
        # unbroken run's, and the tail-only reader sees the whole run.
        points, _ = read_batch_losses(self.path / BATCH_LOSSES_NAME)
        points = points_before_resume(points, self.resumed_epoch, event["batches_per_epoch"])
        self.batch_losses.resume_after(points)
        lines = [{"total_steps": total}, *({"step": step, "loss": loss} for step, loss in points)]
        atomic_write_bytes(self.path / BATCH_LOSSES_NAME, "".join(json.dumps(line) + "\n" for line in lines).encode())

    def on_batch_end(self, event: dict) -> None:
        # Kept in the run folder (downsampled) so the per-batch chart survives a restart;
        # not fsynced: losing the last points in a crash costs nothing.
        step = batch_step(event)
        assert self.batch_losses is not None  # on_run_start made it
        if self.batch_losses.keep(step):
            self._append(BATCH_LOSSES_NAME, {"step": step, "loss": event["loss"]})

    def _append(self, name: str, record: dict) -> None:
        with open(self.path / name, "a") as f:
            f.write(json.dumps(record) + "\n")

    # Each epoch writes the weights, then the resume state, then the history line. A kill
    # between them leaves the weights ahead of history.jsonl; the store appends the
    # missing line from the weights' metadata when it next reads the run (run_store).
    def on_checkpoint(self, model, record: dict) -> None:
        save_checkpoint(model, self.path / WEIGHTS_NAME, config=self.config.to_dict(), metrics=record)

    def on_test_scores(self, probabilities) -> None:
        self.test_scores = probabilities  # of the weights just saved; kept by train_run at the end

    def on_resume_point(self, state: ResumeState) -> None:
        save_resume(self.path / RESUME_NAME, state)

    def on_epoch_end(self, record: dict) -> None:
        crash_point("history.jsonl", record["epoch"])
        with open(self.path / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


def train_run(store: RunStore, run_id: str, config: TrainConfig, callbacks=(), stop=None, data=None,
              resume: ResumeState | None = None, cores_kept_free: int = 0, photo_data=None, owner_extra: dict | None = None) -> dict:
    """Train an already-created run folder (or continue it from `resume`, see
    check_resume) and write its result; returns the result. `cores_kept_free`, `photo_data`: see fit;
    `owner_extra`: what owner.json records beside the process (a remote run's Ray actor)."""
    writer = RunWriter(store.root / run_id, config, resumed_epoch=resume.epoch if resume is not None else 0, owner_extra=owner_extra)
    outcome = fit(config, data=data, callbacks=[writer, *callbacks], stop=stop, resume=resume, cores_kept_free=cores_kept_free,
                  photo_data=photo_data)
    result = result_from(outcome.status, outcome.message, outcome.history, outcome.seconds, count_parameters(outcome.model))
    result.update(outcome.start, **outcome.ran_on)
    if writer.test_scores is not None:  # Compare's analysis of the saved weights, without scoring them again
        store_analysis(store.root / run_id / WEIGHTS_NAME, writer.test_scores)
    store.write_result(run_id, result)
    if result["status"] not in RESUMABLE:  # finished or diverged: nothing to continue, free the space
        (store.root / run_id / RESUME_NAME).unlink(missing_ok=True)
    return result


def can_resume(store: RunStore, run_id: str) -> bool:
    """Whether the run ended early and saved a resume state (cheap: for a button)."""
    return is_regular_file(store.root / run_id / RESUME_NAME)


def check_resume(store: RunStore, run_id: str) -> tuple[TrainConfig, ResumeState]:
    """Check that a run can continue: (config, state) for train_run, after
    rewind_to_resume_point; UserError when it cannot. Reads only, so a refusal (here, or
    by a limit checked after it) changes nothing."""
    if not (store.root / run_id).is_dir():
        raise UserError(f"no such run: {store.root / run_id} is not a run folder")
    record = store.read(run_id)
    if record.status not in RESUMABLE:
        raise UserError(f"run {run_id} is {record.status}; only an interrupted, stopped or failed run can be resumed")
    folder = store.root / run_id
    try:
        values, problems = read_config_file(folder / "config.json")
    except FileProblem as e:
        raise UserError(f"cannot resume run {run_id}: {e}") from e
    if values is None or problems:
        raise UserError(f"cannot resume run {run_id}: its config.json is missing or damaged ({'; '.join(problems)})")
    config = TrainConfig.from_dict(values).validate()
    state = load_resume(folder / RESUME_NAME)
    if state.epoch > config.epochs:
        raise UserError(f"cannot resume run {run_id}: its resume state is from epoch {state.epoch} of {config.epochs}")
    return config, state


def rewind_to_resume_point(store: RunStore, run_id: str, state: ResumeState) -> None:
    """Set the run's folder back to its resume point: history.jsonl holds exactly the epochs
    the resume state has, result.json goes. Call once every check has passed."""
    folder = store.root / run_id
    # This process owns the run from here: nobody tidies its folder while it is rewritten.
    atomic_write_json(folder / "owner.json", owner_record())
    history = "".join(json.dumps(line) + "\n" for line in state.history)
    atomic_write_bytes(folder / "history.jsonl", history.encode())
    (folder / "result.json").unlink(missing_ok=True)


@dataclass
class LiveRun:
    """What a page needs to draw a run that is queued or training, kept under `lock`."""

    id: str
    config: TrainConfig
    owner: str = ""  # access.Visitor.id
    adopted: bool = False  # queued by a previous server process and queued again by this one
    resumed_epoch: int = 0  # the epoch a resumed run goes on after (0: a new run)
    status: RunStatus = RunStatus.QUEUED
    message: str = ""
    history: list[dict] = field(default_factory=list)
    batch_losses: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCH_POINTS + 1))  # (step, loss)
    total_steps: int | None = None
    sampler: BatchLossSampler | None = None
    progress: dict = field(default_factory=dict)  # the last batch event
    started: float | None = None
    ended: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # engine callbacks: called from the training thread, so they only write state.
    def on_run_start(self, event: dict) -> None:
        with self.lock:
            self.status, self.started = RunStatus.RUNNING, time.time()
            self.progress = {"epoch": 0, "batch": 0, "batches": event["batches_per_epoch"], "progress": 0.0}
            self.total_steps = event["epochs"] * event["batches_per_epoch"]
            self.sampler = BatchLossSampler(self.total_steps)  # the points RunWriter stores, so a restart shows the same chart
            if self.resumed_epoch:  # as RunWriter: the finished epochs' points (see resumed), then the new ones
                kept = points_before_resume(self.batch_losses, self.resumed_epoch, event["batches_per_epoch"])
                self.batch_losses.clear()
                self.batch_losses.extend(kept)
                self.sampler.resume_after(kept)

    @classmethod
    def resumed(cls, store: RunStore, run_id: str, config: TrainConfig, state: ResumeState, **kw) -> LiveRun:
        """The live state of a run queued to resume after `state`'s epoch: its history, and the
        per-batch points it stored, so the chart shows them while it waits and goes on from them."""
        live = cls(run_id, config, history=list(state.history), resumed_epoch=state.epoch, **kw)
        points, live.total_steps = read_batch_losses(store.root / run_id / BATCH_LOSSES_NAME)
        live.batch_losses.extend(points)
        return live

    def on_batch_end(self, event: dict) -> None:
        with self.lock:
            self.progress = event
            step = batch_step(event)
            if self.sampler is None or self.sampler.keep(step):
                self.batch_losses.append((step, event["loss"]))

    def on_epoch_end(self, record: dict) -> None:
        with self.lock:
            self.history.append(record)

    def snapshot(self) -> RunView:
        with self.lock:
            return RunView(self.id, self.status, self.message, self.config.to_dict(), list(self.history),
                           list(self.batch_losses), dict(self.progress), self.started, self.ended, live=True,
                           total_steps=self.total_steps)


class RunManager:
    """Owns one worker thread that trains queued runs in order, so two runs never fight
    over the CPU cores. One per process (the app keeps it in st.cache_resource)."""

    def __init__(self, store: RunStore | None = None, data_loader=None, policy: Policy | None = None,
                 held_elsewhere: Callable[[], list[str]] = list):
        self.store = store or RunStore()
        self.policy = policy or Policy()  # local mode unless told: everyone may do everything
        self.held_elsewhere = held_elsewhere  # owners of runs queued or training outside this manager (sweeps)
        self._data_loader = data_loader
        self._live: dict[str, LiveRun] = {}
        self._resume: dict[str, ResumeState] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closing = False
        atexit.register(_close_at_exit, weakref.ref(self))
        self._requeue_from_disk()

    def submit(self, config: TrainConfig, name: str = "", visitor: Visitor | None = None) -> str:
        """Validate, check the policy's limits, create the run folder (owned by `visitor`,
        default the local user) and queue it; returns the run id. A refusal is one
        UserError and creates nothing."""
        config.validate()
        visitor = visitor or self.policy.local_visitor()
        self.policy.check_config(config)  # before the lock: the memory estimate builds the model on meta
        with self._lock:
            # Checked and queued under one lock, so two quick clicks cannot both pass the limit.
            self.check_queue(visitor)
            try:
                run_id = self.store.create(config, name, owner=visitor.id).name
            except UserError as e:  # a visitor learns why (a full disk), not where the server keeps its runs
                root = str(self.store.root)
                raise UserError(str(e).replace(root + os.sep, "").replace(root, "the run store")) from e
            try:
                self.store.mark_queued(run_id)
            except OSError as e:  # a disk that filled up since create: leave nothing behind
                self.store.delete(run_id)
                raise UserError(f"cannot queue the run: {e.strerror or e}") from e
            self._enqueue(LiveRun(run_id, config, owner=visitor.id))
        return run_id

    def resume(self, run_id: str, visitor: Visitor | None = None) -> None:
        """Queue an interrupted (or stopped, or failed) run to continue from its last
        finished epoch; UserError, changing nothing, when it cannot. Only its owner or an
        admin may, or anyone for an orphan where no admin can log in."""
        owner = self.owner_of(run_id)
        visitor = visitor or self.policy.local_visitor()
        self.policy.check_modify(visitor, owner, "resume", orphan=self.is_orphan(run_id))
        config, state = check_resume(self.store, run_id)
        self.policy.check_config(config)  # limits may have changed since it started
        with self._lock:  # like submit: two quick clicks cannot both pass the queue limits
            if run_id in self._live and self._live[run_id].status in ACTIVE:
                raise UserError(f"run {run_id} is already {self._live[run_id].status}")
            # The run counts against its owner's runs, whoever resumes it (an admin may).
            self.check_queue(self.policy.visitor(owner, owner) if owner else visitor)
            rewind_to_resume_point(self.store, run_id, state)  # only once nothing can refuse
            self.store.mark_queued(run_id)
            self._resume[run_id] = state
            self._enqueue(LiveRun.resumed(self.store, run_id, config, state, owner=owner))

    def active_owners(self) -> list[str]:
        """One owner per run queued or training: this manager's runs, and the places sweeps
        hold for their trials at once (`held_elsewhere`)."""
        with self._lock:
            owners = [live.owner for live in self._live.values() if live.status in ACTIVE]
        return owners + list(self.held_elsewhere())

    def check_queue(self, visitor: Visitor, adding: int = 1) -> None:
        """LimitError when `adding` more runs of `visitor` would go over the queue limits.
        To start runs elsewhere (a sweep's trials at once) on its verdict, hold `queue_lock`
        from the check to the start: runs are queued here under it too."""
        owners = self.active_owners()
        self.policy.check_queue(visitor, owners.count(visitor.id), len(owners), adding)

    @property
    def queue_lock(self) -> threading.Condition:
        return self._lock

    def can_resume(self, run_id: str) -> bool:
        """Whether the run saved a resume state (for a page's Resume button)."""
        return can_resume(self.store, run_id)

    def _enqueue(self, live: LiveRun) -> None:
        with self._lock:
            self._live[live.id] = live
            self._queue.append(live.id)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="fmnist-trainer", daemon=True)
                self._worker.start()
            self._lock.notify_all()

    def _requeue_from_disk(self) -> None:
        """Queue again, oldest first, the runs a previous process left waiting."""
        for record in sorted(self.store.list(), key=lambda r: (self.store.queued_at(r.id), r.created, r.id)):
            if record.status != RunStatus.QUEUED:
                continue
            try:
                config = TrainConfig.from_dict(record.config).validate()
                state = load_resume(record.path / RESUME_NAME) if can_resume(self.store, record.id) and record.history else None
            except UserError as e:
                self.store.mark_queued(record.id, False)
                self._write_result(record.id, result_from(RunStatus.FAILED, f"could not be queued again after a restart: {e}", record.history, 0.0, None))
                continue
            if state is not None:
                self._resume[record.id] = state
                self._enqueue(LiveRun.resumed(self.store, record.id, config, state, owner=record.owner, adopted=True))
            else:
                self._enqueue(LiveRun(record.id, config, owner=record.owner, adopted=True))

    def owner_of(self, run_id: str) -> str:
        with self._lock:
            live = self._live.get(run_id)
        return live.owner if live else self.store.read(run_id).owner

    def is_orphan(self, run_id: str) -> bool:
        """Whether the run outlived the server that queued or trained it: queued again after a
        restart (until it ends) or interrupted. Its visitor may be gone for good, so where no
        admin can log in, anyone may cancel, stop or resume it (access.Policy.can_modify)."""
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            with live.lock:
                return live.adopted and live.status in ACTIVE
        return self.store.read(run_id).status == RunStatus.INTERRUPTED

    def stop(self, run_id: str, visitor: Visitor | None = None) -> None:
        """Stop a running run (it keeps its finished epochs) or cancel a queued one.
        Only its owner or an admin may, or anyone for an orphan where no admin can log in
        (NotAllowed otherwise)."""
        self.policy.check_modify(visitor or self.policy.local_visitor(), self.owner_of(run_id), "stop", orphan=self.is_orphan(run_id))
        with self._lock:
            live = self._live.get(run_id)
            if live is None:
                record = self.store.read(run_id)
                if record.sweep and record.status in (RunStatus.STARTING, RunStatus.RUNNING):
                    # a sweep's trial, in a Ray worker: it stops itself; one still starting is cancelled (the page's Cancel)
                    self.store.request_stop(run_id, cancel=record.status == RunStatus.STARTING)
                return
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._resume.pop(run_id, None)
                self._finish(live, RunStatus.CANCELLED, "cancelled before it started")
                self._write_result(run_id, result_from(RunStatus.CANCELLED, live.message, live.history, 0.0, None))
                self.store.mark_queued(run_id, False)
            else:
                self._stop_started(live)

    def _stop_started(self, live: LiveRun) -> None:
        """Ask a run that has left the queue to stop (remote_runs asks its Ray actor)."""
        live.stop.set()

    @property
    def queue_note(self) -> str:
        """Why queued runs wait, for the page's queue line."""
        return "one run trains at a time so runs don't fight over the CPU"

    def active_ids(self) -> set[str]:
        with self._lock:
            return {rid for rid, live in self._live.items() if live.status in ACTIVE}

    def statuses(self) -> dict[str, RunStatus]:
        """{run id: status} of every run this manager holds: cheap enough to poll every second."""
        with self._lock:
            live = list(self._live.values())
        return {run.id: run.status for run in live}

    def live(self, run_id: str) -> RunView | None:
        with self._lock:
            live = self._live.get(run_id)
        return live.snapshot() if live else None

    def view(self, run_id: str) -> RunView:
        """The run whoever holds it: this manager's live snapshot, else the store's record."""
        return self.live(run_id) or self.store.view(run_id)

    def queue_position(self, run_id: str) -> int | None:
        with self._lock:
            return list(self._queue).index(run_id) + 1 if run_id in self._queue else None

    def list_runs(self) -> list[RunRecord]:
        """Every run on disk; runs this manager holds carry their live status."""
        records = self.store.list()
        with self._lock:
            live = dict(self._live)
        for record in records:
            if record.id in live:  # the same status view() gives, not the disk's a moment behind it
                with live[record.id].lock:
                    record.status = live[record.id].status
        return records

    def rename(self, run_id: str, name: str, visitor: Visitor | None = None) -> None:
        self.policy.check_modify(visitor or self.policy.local_visitor(), self.owner_of(run_id), "rename")
        self.store.rename(run_id, name)

    def delete(self, run_id: str, visitor: Visitor | None = None) -> None:
        """Move a run to the store's trash (RunStore.restore brings it back)."""
        self.policy.check_modify(visitor or self.policy.local_visitor(), self.owner_of(run_id), "delete")
        if run_id in self.active_ids() or self.store.read(run_id).status in ACTIVE:  # here, or in another process
            raise UserError("stop this run before deleting it")
        self.store.trash(run_id)
        with self._lock:
            self._live.pop(run_id, None)

    def restore(self, run_id: str, visitor: Visitor | None = None) -> None:
        """Bring a run back from the trash. Only its owner or an admin may: checked here, not
        only by a page's disabled button (a forged click reaches this too)."""
        owner = RunStore(self.store.trash_root).read(run_id).owner
        self.policy.check_modify(visitor or self.policy.local_visitor(), owner, "restore")
        self.store.restore(run_id)

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Block until nothing is queued or running (for the CLI and tests)."""
        deadline = time.time() + timeout
        while self.active_ids():
            if time.time() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Stop the run in training and wait (up to `timeout` s) for the worker to leave torch.

        Called at interpreter exit (a server stopped with SIGTERM or Ctrl-C): a daemon
        thread still inside torch's C++ code when Python finalizes is killed there, and the
        process aborts with "terminate called without an active exception". The stopped run
        is left as a crash leaves it (no result.json), so it reads back as interrupted with
        its finished epochs; queued runs are not started."""
        with self._lock:
            self._closing = True
            for live in self._live.values():
                live.stop.set()
            self._lock.notify_all()
            worker = self._worker
        if worker is not None and worker.is_alive():
            worker.join(timeout)

    def _finish(self, live: LiveRun, status: RunStatus, message: str) -> None:
        with live.lock:
            live.status, live.message, live.ended = status, message, time.time()

    def _work(self) -> None:
        _lower_this_threads_priority(TRAINER_NICENESS)
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if self._closing:
                    return
                live = self._live[self._queue.popleft()]
            self._train(live)

    def _train(self, live: LiveRun) -> None:
        try:
            data = self._data_loader() if self._data_loader else None
            with self._lock:
                resume = self._resume.pop(live.id, None)
            result = train_run(self.store, live.id, live.config, callbacks=[live], stop=live.stop, data=data, resume=resume,
                               cores_kept_free=APP_CORES)
            if self._closing and result["status"] == RunStatus.STOPPED:  # by close(), not by a user
                (self.store.root / live.id / "result.json").unlink(missing_ok=True)
                result = {"status": RunStatus.INTERRUPTED, "message": "the server stopped while it trained"}
            self._finish(live, RunStatus(result["status"]), result["message"])
        except Exception as e:  # noqa: BLE001 - any failure must end as a visible 'failed' run
            message = failure_message(e, self.store, live.id)
            history = self.store.settled_history(live.id)  # the disk's epochs: the live copy can be one behind
            # Should the disk be full, result.json may not be written either; the run still
            # ends here, so it never reads as running (Stop and Delete work).
            self._write_result(live.id, result_from(RunStatus.FAILED, message, history, 0.0, None))
            self._finish(live, RunStatus.FAILED, message)
            traceback.print_exc()

    def _write_result(self, run_id: str, result: dict) -> None:
        try:
            self.store.write_result(run_id, result)
        except OSError as e:  # a full or read-only disk: the live status above still says it ended
            print(f"could not write the result of run {run_id}: {e}", file=sys.stderr)


def disk_full(error: BaseException) -> bool:
    # safetensors reports a full disk as its own error, with the OS's words in the text
    return (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or "no space left on device" in str(error).lower()


def _lower_this_threads_priority(niceness: int) -> None:
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(niceness, os.getpriority(os.PRIO_PROCESS, thread)))
    except (AttributeError, OSError):  # not Linux, or not allowed: train at the normal priority
        pass


DISK_FULL = "disk full: no space left to save the run; free some space, then "


def disk_full_message(store: RunStore, run_id: str) -> str:
    """What to do after a full disk ended the run: resume only where a resume state was saved
    (the Resume button and `train --resume` refuse otherwise)."""
    if can_resume(store, run_id):
        return DISK_FULL + "resume it from its last saved epoch"
    return DISK_FULL + "train it again (no epoch was saved with what resuming needs)"


def _close_at_exit(manager_ref: weakref.ref) -> None:
    manager = manager_ref()
    if manager is not None:
        manager.close()


def failure_message(error: Exception, store: RunStore, run_id: str) -> str:
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "out of memory: try a smaller batch size or a smaller model"
    if disk_full(error):
        return disk_full_message(store, run_id)
    return f"{type(error).__name__}: {error}"
