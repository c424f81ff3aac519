"""The Sweep page's helpers: turn the form into `sweep` CLI arguments, launch the driver as
a subprocess, and turn the run store's trials into a table and a chart.

Why a subprocess (`python -m fmnist_core sweep ...`) and not a thread of the server: Ray
starts its own processes and installs signal handlers, which only work in a main thread;
in a child process Ray's memory, its start-up cost and its failures stay out of the
web server, the page never waits on Ray (it reads the run store), and Stop is a signal
the driver already handles like Ctrl-C. The child is in the server's process group, so
stopping the server with Ctrl-C stops its sweeps too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from urllib.parse import urlencode

import altair as alt
import pandas as pd
import streamlit as st

from fmnist_core import paths
from fmnist_core.access import LOCAL_OWNER, Policy, Visitor
from fmnist_core.config import DEFAULTS, SETTINGS
from fmnist_core.errors import UserError
from fmnist_core.run_manager import RunManager
from fmnist_core.run_store import RunRecord, RunStore, best_test_accuracy
from fmnist_core.statuses import SWEEP_ACTIVE
from fmnist_core.sweep import OWNER_ENV, PARENT_ENV, SweepSpec
from fmnist_core.sweep_store import SweepStore
from ui.form import query_from_form
from ui.tables import Column
from ui.visitor import studio_policy

HOW = {
    "grid": "each value (grid)",
    "choice": "sample from values",
    "loguniform": "sample, log scale",
    "uniform": "sample, linear",
    "randint": "sample whole numbers",
}


def ways_to_vary(name: str) -> list[str]:
    """The distributions that fit a setting's kind (config.SETTINGS decides)."""
    kind = SETTINGS[name].kind
    if kind == "float":
        return ["grid", "loguniform", "uniform", "choice"]
    if kind == "int":
        return ["grid", "randint", "choice"]
    return ["grid", "choice"]


def default_values(name: str, how: str) -> str:
    """What the values field starts with: something valid to edit."""
    declared = SETTINGS[name]
    if how in ("loguniform", "uniform", "randint"):
        low = declared.low if not declared.low_open else (DEFAULTS[name] or 1) / 10
        if how == "loguniform" and name == "lr":
            return "0.0001:0.3"
        high = declared.high if declared.kind == "int" and declared.high <= 64 else (DEFAULTS[name] or 1) * 10
        return f"{low:g}:{min(high, declared.high):g}"
    if declared.kind in ("choice", "bool"):
        values = declared.allowed() if declared.kind == "choice" else (True, False)
        return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values[:4])
    if name == "lr":
        return "0.01, 0.05, 0.1"
    default = DEFAULTS[name]
    return "" if default is None else str(default)


def space_flag(name: str, how: str, text: str) -> tuple[str, str]:
    """('--grid', 'lr=0.01,0.05') or ('--sample', 'lr=loguniform:1e-4:0.3') from a form row."""
    compact = ",".join(part.strip() for part in text.replace(";", ",").split(",") if part.strip())
    if how == "grid":
        return "--grid", f"{name}={compact}"
    if how == "choice":
        return "--sample", f"{name}=choice:{compact}"
    return "--sample", f"{name}={how}:{text.replace(' ', '')}"


@dataclass
class Launched:
    """A sweep driver started by this server."""

    sweep_id: str
    process: subprocess.Popen
    args: list[str] = field(default_factory=list)
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

    def launch_as(self, visitor: Visitor, manager: RunManager, sweep_id: str, args: list[str], spec: SweepSpec) -> None:
        """Launch a checked sweep for `visitor` within every limit, or raise a UserError
        (access.LimitError: which limit, by how much) before any process starts."""
        spec.check_limits(self.policy)  # every trial's settings and memory, as a Train run's
        at_once = spec.trials_at_once()
        # The check and the launch under the lock runs are queued under (then this one):
        # two quick clicks, or a click and a Train run, cannot both take the last place.
        with manager.queue_lock, self._lock:
            self.policy.check_sweep(spec.planned_trials(), at_once, self.sweeps_of(visitor.id))
            manager.check_queue(visitor, adding=at_once)
            self.launch(sweep_id, args, owner=visitor.id, trials_at_once=at_once)

    def launch(self, sweep_id: str, args: list[str], owner: str = LOCAL_OWNER, trials_at_once: int = 1) -> None:
        self.sweeps.root.mkdir(parents=True, exist_ok=True)
        log = open(self.sweeps.log_path(sweep_id), "ab")
        # The driver stops its trials when this server goes away (however it ends), so a
        # stopped server leaves no sweep or Ray process behind.
        env = {**os.environ, "FMNIST_RUNS_DIR": str(self.store.root), PARENT_ENV: str(os.getpid()), OWNER_ENV: owner}
        # --id=VALUE: a value starting with "-" stays a value (the page passes --name= likewise)
        process = subprocess.Popen([sys.executable, "-m", "fmnist_core", "sweep", *args, f"--id={sweep_id}"],
                                   cwd=paths.home(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        with self._lock:
            self._launched[sweep_id] = Launched(sweep_id, process, args, owner, trials_at_once)

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
        if launched is not None and launched.process.poll() is None:
            launched.process.send_signal(signal.SIGTERM)

    def last_log_line(self, sweep_id: str) -> str:
        return self.sweeps.last_log_line(sweep_id)


@st.cache_resource
def sweep_launcher() -> SweepLauncher:
    """One per server process: the sweep drivers it started, whatever the session."""
    return SweepLauncher(RunStore(), studio_policy())


def _rounded(value, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def trial_rows(trials: list[RunRecord], varied: list[str]) -> pd.DataFrame:
    """One row per trial: its varied values, status, epochs, best test accuracy (%, two
    decimals), seconds (whole); the figures are numbers (NaN before a trial's first epoch),
    so the table sorts them as numbers and shows a missing one as ui.tables' placeholder."""
    rows = []
    for run in trials:
        last = run.history[-1] if run.history else {}
        rows.append({
            "run": run.id, **{name: run.config.get(name) for name in varied}, "status": run.status,
            "epoch": f"{len(run.history)}/{run.config.get('epochs')}", "best_test_accuracy": _rounded(best_test_accuracy(run.history), 2),
            "seconds": _rounded(last.get("elapsed_s"), 0), "message": (run.result or {}).get("message", ""),
        })
    columns = ["run", *varied, "status", "epoch", "best_test_accuracy", "seconds", "message"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"best_test_accuracy": "float64", "seconds": "float64"})


# How st.dataframe shows trial_rows: a figure not there yet is "–" (Streamlit writes "None"
# otherwise), and a trial's run id whole (it names the run on Train and Compare).
def trial_columns(varied: list[str]) -> dict[str, Column]:
    """The trials table's columns: each varied setting under its label (numbers as typed),
    then how far the trial got and its figures, each kind as in every other table."""
    kinds = {"float": "exact", "int": "exact", "bool": "bool"}
    return {"run": Column("Run id", width=220),
            **{name: Column(SETTINGS[name].label, kinds.get(SETTINGS[name].kind, "text"), max(80, 6 * len(SETTINGS[name].label) + 16))
               for name in varied},
            "status": Column("Status", width=80), "epoch": Column("Epoch", width=60, help="Epochs done / planned."),
            "best_test_accuracy": Column("Best test accuracy (%)", "percent", 160, "The best epoch's."),
            "seconds": Column("Time (s)", "seconds", 70, "Training time so far."), "message": Column("Message", width=200)}


def hyperparameter_chart(frame: pd.DataFrame, varied: list[str], log_scaled: set[str]) -> alt.HConcatChart | None:
    """One scatter per varied hyperparameter: its value against the trial's best test accuracy."""
    scored = frame.dropna(subset=["best_test_accuracy"])
    if scored.empty:
        return None
    charts = []
    for name in varied:
        numeric = SETTINGS[name].kind in ("int", "float") and scored[name].notna().all()
        scale = alt.Scale(type="log") if name in log_scaled else alt.Scale(zero=False)
        x = alt.X(f"{name}:Q", scale=scale, title=SETTINGS[name].label) if numeric else alt.X(f"{name}:N", title=SETTINGS[name].label)
        frame_for = scored.assign(**{name: scored[name].astype(str)}) if not numeric else scored
        charts.append(
            alt.Chart(frame_for, width=260, height=220).mark_circle(size=90, opacity=0.8).encode(
                x=x, y=alt.Y("best_test_accuracy:Q", scale=alt.Scale(zero=False), title="best test accuracy (%)"),
                color=alt.Color("status:N", title=None),
                tooltip=["run", name, "status", "epoch", alt.Tooltip("best_test_accuracy:Q", format=".2f")],
            )
        )
    return alt.hconcat(*charts)


# Settings a link to the Train page carries: the trial's own, minus those the machine decides.
NOT_LINKED = {"threads", "device", "name"}


def train_link(config: dict) -> str:
    """/train?lr=..&model=..: a trial's settings as the Train form's own link encodes them
    (ui.form.query_from_form), with the model always spelled out and this machine's threads,
    device and the trial's name left to the form."""
    values = {k: v for k, v in config.items() if k not in NOT_LINKED}
    return "train?" + urlencode({"model": config.get("model", DEFAULTS["model"]), **query_from_form(values)})


def compare_link(run_ids: list[str]) -> str:
    return "compare?" + urlencode({"runs": ",".join(run_ids)})
