"""Train-page runs on a Ray cluster: RemoteRunManager, used when $FMNIST_RAY_ADDRESS is set.

The queue, the owners and the limits stay in the app (RunManager). Each run that leaves the
queue becomes one detached, named Ray actor, `fmnist-run-<id>` in the `fmnist-studio`
namespace, holding the run's threads as its CPUs; it trains with `train_run` into the shared
run store (the same files as a local run), so the live charts, Compare, Predict and the CLI
read it unchanged. Runs start as the cluster has free CPUs, not one at a time.

- Stop and Cancel write the run's stop.json (RunStore.request_stop); the actor's training
  loop looks at it twice a second and stops after the batch, keeping its finished epochs.
- owner.json names the actor and its node: liveness comes from the cluster. A worker or node
  that dies makes the run "failed" with the reason (resumable from its last finished epoch).
- The actors outlive the app: a new manager on the same store finds them by name again.

This module imports Ray only inside its functions: an app without a cluster never loads it.
The worker nodes need this package and the run store (and the data) at the same paths as
the app: a shared file system.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_json
from fmnist_core.base.statuses import RunStatus
from fmnist_core.base.words import counted
from fmnist_core.formats.run_files import OWNER, FileProblem, read_json_file
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import HOST, QUEUED_NAME, STOP_NAME, RunStore, RunView, StopRequest, owner_record, result_from
from fmnist_core.training.resume import RESUME_NAME, load_resume
from fmnist_core.training.run_manager import LiveRun, RunManager, can_resume, failure_message, train_run

RAY_ADDRESS_ENV = "FMNIST_RAY_ADDRESS"  # the cluster's head, HOST:PORT (or "auto"); unset: train in the server's thread
NAMESPACE = "fmnist-studio"  # the Ray namespace of the runs' named actors
ACTOR_PREFIX = "fmnist-run-"
POLL_S = 0.5  # how often the app looks at its remote runs (the actor looks at stop.json as often)
UNREACHABLE_S = 60.0  # an actor unreachable this long (its node gone silent) is taken for dead
# Passed on to the actors: where the worker finds the data and the shipped models, as the app does.
FORWARDED_ENV = ("FMNIST_DATA_DIR", "FMNIST_HOME", "FMNIST_PRETRAINED_DIR")
CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


def ray_address() -> str | None:
    """The configured cluster ($FMNIST_RAY_ADDRESS), or None: train locally."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def make_run_manager(store: RunStore | None = None, data_loader=None, policy: Policy | None = None, held_elsewhere=list) -> RunManager:
    """The app's manager: on the configured Ray cluster, else the local one (no Ray imported)."""
    address = ray_address()
    if address:
        return RemoteRunManager(address, store, policy=policy, held_elsewhere=held_elsewhere)
    return RunManager(store, data_loader=data_loader, policy=policy, held_elsewhere=held_elsewhere)


def run_cpus(config: TrainConfig) -> int:
    """The CPUs a run asks the cluster for: its threads (automatic threads: one)."""
    return config.threads or 1


def actor_name(run_id: str) -> str:
    return ACTOR_PREFIX + run_id


def ray_auth_env() -> None:
    """Before joining a cluster. Ray >= 2.59 turns token authentication on for clusters started by `ray start --head`
    when a token exists (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), but a
    driver given an explicit address only sends the token when RAY_AUTH_MODE=token. So when
    a token is there and the mode is not set, set it: the driver then authenticates like
    the nodes do. RAY_AUTH_MODE=disabled (set by the user) is respected."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        # Ray reads its config once per process; refresh it as Ray's own
        # _enable_token_auth does, or this process keeps sending no token.
        from ray._raylet import Config  # type: ignore[attr-defined]  # a private module: Ray's stubs do not list it

        Config.initialize("")


def connect(address: str) -> None:
    """Join the cluster at `address` (once per process); UserError in one line when it cannot."""
    import ray

    if ray.is_initialized():
        return
    if address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"{RAY_ADDRESS_ENV}={address!r}: give the Ray head as HOST:PORT, e.g. 10.0.0.5:6379")
        try:  # Ray's own connect retries for a minute before it gives up
            with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise UserError(f"{RAY_ADDRESS_ENV}={address}: no Ray cluster answers there ({e.strerror or e})") from None
    ray_auth_env()
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # noqa: BLE001 - Ray raises several types here; each means "could not join"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{RAY_ADDRESS_ENV}={address}: could not join the Ray cluster there ({first[:200]})") from None


# ---- the actor: runs in a Ray worker process --------------------------------------------------


class RunActor:
    """One Train-page run on the cluster. Threaded (max_concurrency > 1): `join` and `where`
    answer while `train` trains."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: dict | None = None

    def where(self) -> dict:
        import ray

        return {"host": HOST, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def train(self, root: str, run_id: str, values: dict, cpus: int, resume: bool, name: str) -> dict:
        """Train the run's folder (continue it from its resume state if `resume`); returns its result."""
        import ray

        extra = {"ray_actor": name, "ray_node": ray.get_runtime_context().get_node_id()}
        store = RunStore(root)
        folder = store.root / run_id
        try:
            atomic_write_json(folder / "owner.json", owner_record(starting=True, **extra))  # claimed: "starting"
            config = TrainConfig.from_dict({**values, "threads": cpus}).validate()  # exactly the CPUs Ray gave it
            state = load_resume(folder / RESUME_NAME) if resume else None
            result = train_run(store, run_id, config, stop=StopRequest(folder), resume=state, owner_extra=extra)
            if result["status"] == RunStatus.STOPPED and not result.get("epochs_done") and store.cancel_requested(run_id):
                result = result_from(RunStatus.CANCELLED, "cancelled before it started", [], 0.0, None)
                store.write_result(run_id, result)
                (folder / RESUME_NAME).unlink(missing_ok=True)
        except Exception as e:  # noqa: BLE001 - any failure must end as a visible 'failed' run
            result = result_from(RunStatus.FAILED, failure_message(e, store, run_id), store.settled_history(run_id), 0.0, None)
            try:
                store.write_result(run_id, result)
            except OSError:
                pass  # the app writes it when it learns the result
        finally:
            (folder / STOP_NAME).unlink(missing_ok=True)
        self._result = result
        self._done.set()
        return result

    def join(self) -> dict | None:
        """The result, once `train` has ended (a manager that re-attached waits on this)."""
        self._done.wait()
        return self._result


_ACTOR_CLASS: Any = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(RunActor)
    return _ACTOR_CLASS


# ---- the app side ------------------------------------------------------------------------------


@dataclass
class _Remote:
    """A run this manager placed on the cluster."""

    cpus: int
    actor: Any = None
    ref: Any = None  # of actor.train (or actor.join after a re-attach or a lost connection)
    unreachable_since: float | None = None


def read_owner(folder: Path) -> dict | None:
    try:
        return read_json_file(folder / "owner.json", OWNER)
    except FileProblem:
        return None


def lost_reason(error: BaseException) -> str:
    """Why a run's Ray actor went away, in one line."""
    text = str(error).lower()
    if "node" in text and ("died" in text or "dead" in text or "removed" in text or "failed" in text):
        return "the Ray node it trained on died"
    from ray.exceptions import RayActorError

    if isinstance(error, RayActorError):
        return "its Ray worker process died"
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"it failed on the Ray cluster ({(lines[-1] if lines else type(error).__name__)[:200]})"


def progress_of(view: RunView, epochs: int) -> dict:
    """A remote run's progress, from the per-batch points it stores (its last kept batch)."""
    if not view.batch_losses or not view.total_steps or not epochs:
        return {}
    step = view.batch_losses[-1][0]
    batches = max(1, view.total_steps // epochs)
    epoch = min(epochs, -(-step // batches))
    last = view.history[-1] if view.history else {}
    return {"epoch": epoch, "batch": step - (epoch - 1) * batches, "batches": batches, "progress": step / view.total_steps,
            "images_per_s": last.get("images_per_s", 0)}


class RemoteRunManager(RunManager):
    """A RunManager whose runs train on a Ray cluster (see the module's text)."""

    def __init__(self, address: str, store: RunStore | None = None, policy: Policy | None = None, held_elsewhere=list):
        connect(address)
        self.address = address
        self._remote: dict[str, _Remote] = {}
        self._watcher: threading.Thread | None = None
        super().__init__(store, policy=policy, held_elsewhere=held_elsewhere)  # re-attaches, then queues again
        self._watcher = threading.Thread(target=self._watch, name="fmnist-ray-runs", daemon=True)
        self._watcher.start()

    @property
    def queue_note(self) -> str:
        return "runs start as the Ray cluster has free CPUs"

    # -- placing queued runs on the cluster

    def _work(self) -> None:
        """The dispatcher: the next queued run goes to the cluster once its CPUs are free there."""
        while True:
            with self._lock:
                while not self._closing and not self._next_fits():
                    self._lock.wait(POLL_S)
                if self._closing:
                    return
                live = self._live[self._queue.popleft()]
                resume = self._resume.pop(live.id, None) is not None
                cpus = run_cpus(live.config)
                self._remote[live.id] = _Remote(cpus)  # holds its CPUs from here
                (self.store.root / live.id / STOP_NAME).unlink(missing_ok=True)  # an old request must not stop it
                with live.lock:
                    live.status, live.started = RunStatus.STARTING, time.time()
            self._launch(live, cpus, resume)

    def _next_fits(self) -> bool:
        if not self._queue:
            return False
        cpus = run_cpus(self._live[self._queue[0]].config)
        used = sum(remote.cpus for remote in self._remote.values())
        return used + cpus <= self._cluster_cpus() or cpus > self._largest_node()  # too big: let _launch refuse it

    @staticmethod
    def _cluster_cpus() -> float:
        import ray

        return ray.cluster_resources().get("CPU", 0.0)

    @staticmethod
    def _largest_node() -> float:
        import ray

        return max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")), default=0.0)

    def _launch(self, live: LiveRun, cpus: int, resume: bool) -> None:
        name = actor_name(live.id)
        try:
            largest = self._largest_node()
            if cpus > largest:
                raise UserError(f"it needs {cpus} CPUs and the largest node of the Ray cluster has {largest:g}; lower its threads")
            # Claimed before the actor exists: a restart from here on finds it by this name.
            atomic_write_json(self.store.root / live.id / "owner.json", owner_record(starting=True, ray_actor=name))
            self.store.mark_queued(live.id, False)
            actor = self._create_actor(name, cpus, live.config)
            ref = actor.train.remote(str(self.store.root), live.id, live.config.to_dict(), cpus, resume, name)
        except Exception as e:  # noqa: BLE001 - a run that cannot be placed ends as a visible 'failed' run
            why = str(e) if isinstance(e, UserError) else (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            message = f"could not start on the Ray cluster: {why}"
            self.store.mark_queued(live.id, False)
            self._write_result(live.id, result_from(RunStatus.FAILED, message, self.store.settled_history(live.id), 0.0, None))
            with self._lock:
                self._remote.pop(live.id, None)
                self._lock.notify_all()
            self._finish(live, RunStatus.FAILED, message)
            return
        with self._lock:
            self._remote[live.id].actor, self._remote[live.id].ref = actor, ref

    def _create_actor(self, name: str, cpus: int, config: TrainConfig):
        import ray

        options: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "lifetime": "detached", "num_cpus": cpus,
                                   "max_restarts": 0, "max_concurrency": 4}
        if config.device == "cuda":
            options["num_gpus"] = 1
        if env := {key: os.environ[key] for key in FORWARDED_ENV if os.environ.get(key)}:
            options["runtime_env"] = {"env_vars": env}
        for _ in range(40):
            try:
                return _actor_class().options(**options).remote()
            except ValueError:  # the name is taken: the actor of this run's earlier attempt, not yet gone
                try:
                    ray.kill(ray.get_actor(name, namespace=NAMESPACE))
                except ValueError:
                    pass
                time.sleep(0.25)
        return _actor_class().options(**options).remote()

    # -- stop, views

    def _stop_started(self, live: LiveRun) -> None:
        """Stop on the cluster: the actor's loop sees stop.json within POLL_S and keeps its
        finished epochs; while it still starts, a Cancel."""
        live.stop.set()
        with live.lock:
            starting = live.status != RunStatus.RUNNING
        self.store.request_stop(live.id, cancel=starting)

    def live(self, run_id: str) -> RunView | None:
        with self._lock:
            live = self._live.get(run_id)
        if live is None:
            return None
        with live.lock:
            status, message, started, ended = live.status, live.message, live.started, live.ended
        if status == RunStatus.QUEUED:
            return live.snapshot()
        view = self.store.view(run_id)  # what the actor wrote to the shared store
        return RunView(run_id, status, message, view.config, view.history, view.batch_losses,
                       progress_of(view, int(view.config.get("epochs") or 0)), started, ended, live=True, total_steps=view.total_steps)

    # -- watching the cluster

    def _watch(self) -> None:
        import ray

        while True:
            with self._lock:
                if self._closing:
                    return
                placed = {run_id: remote for run_id, remote in self._remote.items() if remote.ref is not None}
            if not placed:
                time.sleep(POLL_S)
                continue
            try:
                ready, _ = ray.wait([remote.ref for remote in placed.values()], num_returns=len(placed), timeout=POLL_S)
            except Exception:  # noqa: BLE001 - the connection to the cluster hiccuped: look again
                log.exception("waiting on the Ray cluster")
                time.sleep(POLL_S)
                continue
            asked_again = False
            for run_id, remote in placed.items():
                if any(ref is remote.ref for ref in ready):
                    asked_again |= self._settle(run_id, remote)
                else:
                    self._refresh(run_id)
            if asked_again:
                time.sleep(POLL_S)

    def _refresh(self, run_id: str) -> None:
        """starting -> running once the actor's first batch has rewritten owner.json."""
        live = self._live.get(run_id)
        if live is None or live.status != RunStatus.STARTING:
            return
        owner = read_owner(self.store.root / run_id)
        if owner and owner.get("ray_actor") and owner.get("ray_node") and not owner.get("starting"):
            with live.lock:
                if live.status == RunStatus.STARTING:
                    live.status = RunStatus.RUNNING

    def _settle(self, run_id: str, remote: _Remote) -> bool:
        """The run's call returned: end it with its result, or with why its actor was lost.
        True when the actor was only unreachable and is asked again."""
        import ray
        from ray.exceptions import ActorUnavailableError

        try:
            result = ray.get(remote.ref)
            if not isinstance(result, dict):
                raise RuntimeError("its actor returned no result")
            status, message = result["status"], result.get("message", "")
        except ActorUnavailableError as e:
            remote.unreachable_since = remote.unreachable_since or time.time()
            if time.time() - remote.unreachable_since < UNREACHABLE_S:
                remote.ref = remote.actor.join.remote()  # its node may come back; its death ends this call
                return True
            status, message = self._lost(run_id, f"{lost_reason(e)}: unreachable for {UNREACHABLE_S:.0f} s")
        except Exception as e:  # noqa: BLE001 - any way the actor went is told on the run
            status, message = self._lost(run_id, lost_reason(e))
        with self._lock:
            live = self._live.get(run_id)
        if live is not None:
            self._finish(live, status, message)  # ended before its CPUs go to the next run
        try:
            ray.kill(remote.actor)  # detached: it would hold its CPUs until killed
        except Exception:  # noqa: BLE001 - already gone
            pass
        with self._lock:
            self._remote.pop(run_id, None)
            self._lock.notify_all()
        return False

    def _lost(self, run_id: str, why: str) -> tuple[str, str]:
        """End a run whose actor is gone: its own result if it wrote one, else 'failed' with
        `why`, its finished epochs kept (resumable where a resume state was saved)."""
        record = self.store.read(run_id)
        if record.result is not None:  # it ended, then its actor went
            return record.result["status"], record.result.get("message", "")
        history = self.store.settled_history(run_id)
        then = "resume it from its last finished epoch" if history and can_resume(self.store, run_id) else "train it again"
        message = f"{why}; {counted(len(history), 'finished epoch')} kept: {then}"
        self._write_result(run_id, result_from(RunStatus.FAILED, message, history, float(history[-1].get("elapsed_s", 0.0)) if history else 0.0, None))
        return RunStatus.FAILED, message

    # -- a restart

    def _requeue_from_disk(self) -> None:
        self._reattach()
        super()._requeue_from_disk()

    def _reattach(self) -> None:
        """Find again the runs a previous app placed on the cluster: those still training are
        watched as before; those whose actor is gone end with why."""
        import ray

        for record in self.store.list():
            if record.result is not None or (record.path / QUEUED_NAME).exists():
                continue
            owner = read_owner(record.path)
            name = owner.get("ray_actor") if owner else None
            if not name:
                continue
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
                config = TrainConfig.from_dict(record.config).validate()
            except (ValueError, UserError):
                self._lost(record.id, "its Ray actor was gone when the Studio started again")
                continue
            status = RunStatus.STARTING if owner and owner.get("starting") else RunStatus.RUNNING
            live = LiveRun(record.id, config, owner=record.owner, adopted=True, status=status, history=list(record.history),
                           started=time.time())
            with self._lock:
                self._live[record.id] = live
                self._remote[record.id] = _Remote(run_cpus(config), actor=actor, ref=actor.join.remote())

    def close(self, timeout: float = 30.0) -> None:
        """Stop placing and watching runs; those on the cluster train on (a new manager on the
        same store re-attaches them), queued ones stay queued on disk."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            threads = [self._worker, self._watcher]
        for thread in threads:
            if thread is not None and thread.is_alive() and thread is not threading.current_thread():
                thread.join(min(timeout, 5.0))
