"""The sweep launcher: start a sweep's driver as a subprocess, from a checked SweepSpec.

Why a subprocess (`python -m fmnist_core sweep ...`) and not a thread of the server: Ray
starts its own processes and installs signal handlers, which only work in a main thread;
in a child process Ray's memory, its start-up cost and its failures stay out of the
web server, the page never waits on Ray (it reads the run store), and Stop is a signal
the driver already handles like Ctrl-C. The child is in the server's process group, so
stopping the server with Ctrl-C stops its sweeps too.

The spec travels as `SweepSpec.to_args()` and the driver parses it once (cli.sweep_spec);
its owner travels in OWNER_ENV. This module does not import Streamlit or Ray.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

from fmnist_core.base import paths
from fmnist_core.base.errors import UserError
from fmnist_core.base.statuses import SWEEP_ACTIVE, SweepStatus
from fmnist_core.store.access import LOCAL_OWNER, Policy, Visitor
from fmnist_core.store.run_store import RunStore
from fmnist_core.sweeps.sweep import OWNER_ENV, PARENT_ENV, SweepSpec
from fmnist_core.sweeps.sweep_store import SweepRecord, SweepStore
from fmnist_core.training.run_manager import RunManager


@dataclass
class Launched:
    """A sweep driver started by this server."""

    sweep_id: str
    process: subprocess.Popen
    owner: str = LOCAL_OWNER
    trials_at_once: int = 1


class SweepLauncher:
    """Process-wide (st.cache_resource): the drivers this server started, so any session
    can stop them and the server reaps them. In shared mode a sweep is its launcher's, as
    a run is: only they or an admin stop or delete it, and it is held to the limits."""

    def __init__(self, store: RunStore, policy: Policy | None = None):
        self.store = store
        self.sweeps = SweepStore(store)
        self.policy = policy or Policy()
        self._launched: dict[str, Launched] = {}
        self._lock = threading.RLock()

    def launch_as(self, visitor: Visitor, manager: RunManager, sweep_id: str, spec: SweepSpec) -> None:
        """Launch a checked sweep for `visitor` within every limit, or raise a UserError
        (access.LimitError: which limit, by how much) before any process starts."""
        spec.check_limits(self.policy)  # every trial's settings and memory, as a Train run's
        at_once = spec.trials_at_once()
        # The check and the launch under the lock runs are queued under (then this one):
        # two quick clicks, or a click and a Train run, cannot both take the last place.
        with manager.queue_lock, self._lock:
            self.policy.check_sweep(spec.planned_trials(), at_once, self.sweeps_of(visitor.id))
            manager.check_queue(visitor, adding=at_once)
            self.launch(sweep_id, dataclasses.replace(spec, owner=visitor.id))

    def launch(self, sweep_id: str, spec: SweepSpec) -> None:
        """Start the driver of `spec` (owned by spec.owner) as `sweep_id`; it records the sweep."""
        args = spec.to_args()
        self.sweeps.root.mkdir(parents=True, exist_ok=True)
        log = open(self.sweeps.log_path(sweep_id), "ab")
        # The driver stops its trials when this server goes away (however it ends), so a
        # stopped server leaves no sweep or Ray process behind.
        env = {**os.environ, "FMNIST_RUNS_DIR": str(self.store.root), PARENT_ENV: str(os.getpid()), OWNER_ENV: spec.owner}
        # --id=VALUE: a value starting with "-" stays a value (to_args passes --name= likewise)
        process = subprocess.Popen([sys.executable, "-m", "fmnist_core", "sweep", *args, f"--id={sweep_id}"],
                                   cwd=paths.home(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        with self._lock:
            self._launched[sweep_id] = Launched(sweep_id, process, spec.owner, spec.trials_at_once())

    def _active(self) -> list[tuple[str, int]]:
        """(owner, trials at once) of every sweep starting or running: recorded by its
        driver, or launched here and not recorded yet (Ray takes seconds to start)."""
        records = {r.id: r for r in self.sweeps.list()}
        active = [(r.owner, r.trials_at_once) for r in records.values() if r.status in SWEEP_ACTIVE]
        with self._lock:
            launched = list(self._launched.values())
        return active + [(s.owner, s.trials_at_once) for s in launched if s.sweep_id not in records and s.process.poll() is None]

    def slot_owners(self) -> list[str]:
        """One owner per trial that running sweeps may train at once: these count as runs
        queued or training (RunManager.held_elsewhere)."""
        return [owner for owner, at_once in self._active() for _ in range(at_once)]

    def sweeps_of(self, visitor_id: str) -> int:
        return sum(owner == visitor_id for owner, _ in self._active())

    def owner_of(self, sweep_id: str) -> str:
        with self._lock:
            launched = self._launched.get(sweep_id)
        if self.sweeps.path(sweep_id).exists() or launched is None:
            return self.sweeps.read(sweep_id).owner
        return launched.owner

    def why_locked(self, sweep_id: str, visitor: Visitor) -> str | None:
        """Why `visitor` may not stop or delete the sweep (None when they may)."""
        return self.policy.why_not(visitor, self.owner_of(sweep_id), what="sweep")

    def delete(self, sweep_id: str, visitor: Visitor | None = None) -> None:
        """Move an ended sweep and its trial runs to the trash (the runs are restorable on
        Train). Only its owner or an admin may."""
        self.policy.check_modify(visitor or self.policy.local_visitor(), self.owner_of(sweep_id), "delete", what="sweep")
        if self.running(sweep_id):
            raise UserError("stop this sweep before deleting it")
        self.sweeps.trash(sweep_id)
        with self._lock:
            self._launched.pop(sweep_id, None)

    def running(self, sweep_id: str) -> bool:
        with self._lock:
            launched = self._launched.get(sweep_id)
        return launched is not None and launched.process.poll() is None  # poll() also reaps it

    def status(self, sweep_id: str, record: SweepRecord | None) -> SweepStatus:
        """The sweep's status from its record; before the driver writes one, starting while
        the driver launched here runs, else failed (it died before its first record)."""
        if record is None:
            return SweepStatus.STARTING if self.running(sweep_id) else SweepStatus.FAILED
        return record.status

    def launched_ids(self) -> list[str]:
        with self._lock:
            return list(self._launched)

    def stop(self, sweep_id: str, visitor: Visitor | None = None) -> None:
        """Stop every trial of a sweep; finished epochs stay. The stop file reaches a driver
        started anywhere (the CLI, another machine sharing the store); a driver this server
        started also gets SIGTERM, which it handles like Ctrl-C. Only its owner or an admin
        may (NotAllowed otherwise: a forged click on a disabled button changes nothing)."""
        self.policy.check_modify(visitor or self.policy.local_visitor(), self.owner_of(sweep_id), "stop", what="sweep")
        self.sweeps.request_stop(sweep_id)
        with self._lock:
            launched = self._launched.get(sweep_id)
        # SIGTERM only once the driver has recorded the sweep: it handles the signal from
        # before that first record on. Earlier, the stop file alone stops it (it checks for
        # it before it starts Ray); a signal then would kill it before it could say so.
        if launched is not None and launched.process.poll() is None and self.sweeps.path(sweep_id).exists():
            launched.process.send_signal(signal.SIGTERM)

    def last_log_line(self, sweep_id: str) -> str:
        return self.sweeps.last_log_line(sweep_id)
