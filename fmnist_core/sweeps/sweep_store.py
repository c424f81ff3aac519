"""Sweep records: one small JSON file per sweep beside the runs, `<runs>/.sweeps/<id>.json`.

A record holds what the sweep was asked to do (search space, base config, trials,
search, early stopping) and what it became (status, its trials' run ids, the best
run). Its trials are ordinary runs in the same store, tagged with the sweep id in their
run.json. The driver process writes the record; the Sweep page only reads it (and asks
a sweep to stop by creating `<id>.stop`). This module does not import Ray.
"""

from __future__ import annotations

import builtins
import itertools
import json
import os
import secrets
import shutil
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_json, process_alive
from fmnist_core.base.statuses import ACTIVE, SWEEP_ACTIVE, SWEEP_ENDED, SweepStatus
from fmnist_core.formats.run_files import FileProblem, read_regular_tail, read_regular_text
from fmnist_core.modeling.config import SETTINGS
from fmnist_core.store.run_store import RunRecord, RunStore

SWEEPS_FOLDER = ".sweeps"
LOG_TAIL_BYTES = 64 << 10  # the end of a driver's log, where its last line is


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_space(value) -> bool:
    """A list of varied settings, each {"name": a sweepable setting, "kind": text, ...}, no name twice."""
    if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
        return False
    names = [d.get("name") for d in value]
    return (all(isinstance(n, str) and n in SETTINGS and SETTINGS[n].sweepable for n in names) and len(set(names)) == len(names)
            and all(_is_text(d.get("kind", "")) for d in value))


# {key: (check, value when missing or invalid)}: what SweepRecord and the Sweep page use. A
# record is written by a driver process but read by every visitor's page, so a damaged or
# planted one must cost a warning on that sweep, never the page.
SWEEP_RECORD = {
    "name": (_is_text, ""), "status": (lambda v: v in SWEEP_ACTIVE + SWEEP_ENDED, "failed"), "created": (_is_text, ""),
    "space": (_is_space, []), "base": (lambda v: isinstance(v, dict), {}), "options": (lambda v: isinstance(v, dict), {}),
    "trial_runs": (lambda v: isinstance(v, list) and all(_is_text(t) for t in v), []), "message": (_is_text, ""),
    "seconds": (lambda v: v is None or _is_number(v), None), "best_run": (lambda v: v is None or _is_text(v), None),
    "ray_start_s": (lambda v: v is None or _is_number(v), None),
    "pid": (lambda v: isinstance(v, int) and not isinstance(v, bool), None), "host": (lambda v: v is None or _is_text(v), None),
    "started": (lambda v: v is None or _is_number(v), None), "owner": (_is_text, ""),
}

REQUIRED_SWEEP_KEYS = ("status", "space")  # the driver writes both before anything else


def checked_record(sweep_id: str, values: dict) -> tuple[dict, list[str]]:
    """The record's values, each key that is not of its documented shape replaced by its
    default, with one problem per such key."""
    checked, problems = dict(values), []
    for key, (check, default) in SWEEP_RECORD.items():
        if key not in values and key in REQUIRED_SWEEP_KEYS:
            problems.append(f"{sweep_id}.json has no '{key}'")
        if key in values and not check(values[key]):
            text = json.dumps(values[key])
            problems.append(f"{sweep_id}.json has an invalid '{key}' ({text if len(text) <= 40 else text[:37] + '...'}); ignored")
        if key not in values or not check(values[key]):
            checked[key] = default
    return checked, problems


def new_sweep_id(name: str = "") -> str:
    stamp = datetime.now(UTC)
    return f"sweep-{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def trials_at_once(trials: int | None, max_concurrent: int | None) -> int:
    """How many trials a sweep trains at the same time: its --max-concurrent (default: one
    per CPU of this machine), never more than its trials. Each holds a run's place in the
    shared-mode limits while the sweep runs."""
    at_once = max_concurrent or os.cpu_count() or 1
    return min(at_once, trials) if trials else at_once


def this_host() -> str:
    return socket.gethostname()


def _alive(values: dict) -> bool | None:
    """Is the driver alive? None when it runs on another machine (we cannot tell). Its pid
    and start time together, as for runs: a pid alone may be reused after a crash."""
    host = values.get("host")
    if host and host != this_host():
        return None
    pid = values.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return False
    return process_alive({"pid": pid, "started": values.get("started")})


@dataclass
class SweepRecord:
    id: str
    name: str
    status: SweepStatus
    created: str
    space: list[dict]
    base: dict
    options: dict  # trials, search, early_stop, max_concurrent, cpus_per_trial, address, subset
    trial_runs: list[str] = field(default_factory=list)
    message: str = ""
    seconds: float | None = None
    best_run: str | None = None
    ray_start_s: float | None = None
    problems: list[str] = field(default_factory=list)
    owner: str = ""  # access.Visitor.id of who launched it ("local": the CLI); "" before owners

    @property
    def varied(self) -> list[str]:
        return [d["name"] for d in self.space]

    @property
    def trials_at_once(self) -> int:
        """Run slots the sweep holds while it runs (see trials_at_once)."""
        trials, at_once = self.options.get("trials"), self.options.get("max_concurrent")
        return trials_at_once(trials if isinstance(trials, int) and trials > 0 else None,
                              at_once if isinstance(at_once, int) and at_once > 0 else None)


class SweepStore:
    """Reads and writes sweep records under `<runs root>/.sweeps/`."""

    def __init__(self, runs: RunStore):
        self.runs = runs
        self.root = runs.root / SWEEPS_FOLDER

    def path(self, sweep_id: str) -> Path:
        if not sweep_id or "/" in sweep_id or sweep_id.startswith("."):
            raise UserError(f"'{sweep_id}' is not a sweep id")
        return self.root / f"{sweep_id}.json"

    def stop_path(self, sweep_id: str) -> Path:
        return self.root / f"{sweep_id}.stop"

    def log_path(self, sweep_id: str) -> Path:
        return self.root / f"{sweep_id}.log"

    def last_log_line(self, sweep_id: str) -> str:
        """The last line of the driver's log ("" when there is none): read from its end,
        never through a symlink or from a FIFO."""
        try:
            found = read_regular_tail(self.log_path(sweep_id), LOG_TAIL_BYTES)
        except FileProblem:
            return ""
        lines = [line for line in ([found[0], *found[1].splitlines()] if found else []) if line.strip()]
        return lines[-1].strip() if lines else ""

    def storage_path(self, sweep_id: str) -> Path:
        """Where Ray Tune keeps its own experiment state for this sweep."""
        return self.root / f"{sweep_id}.tune"

    def write(self, sweep_id: str, values: dict) -> None:
        atomic_write_json(self.path(sweep_id), values)

    def update(self, sweep_id: str, **changes) -> dict:
        values = self.raw(sweep_id)
        values.update(changes)
        self.write(sweep_id, values)
        return values

    def raw(self, sweep_id: str) -> dict:
        """The record as stored; FileProblem when it is missing, not a regular file (a FIFO
        is never opened, a symlink never followed), too large, or not JSON."""
        text = read_regular_text(self.path(sweep_id))
        if text is None:
            raise FileProblem(f"{sweep_id}.json is missing")
        return json.loads(text)

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted((p.stem for p in self.root.glob("*.json") if not p.name.startswith(".")), reverse=True)

    def read(self, sweep_id: str) -> SweepRecord:
        problems: list[str] = []
        try:
            values = self.raw(sweep_id)
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
        except FileProblem as e:
            values = {}
            problems.append(str(e))
        except (OSError, ValueError) as e:
            values = {}
            problems.append(f"{sweep_id}.json is damaged ({e})")
        values, shape_problems = checked_record(sweep_id, values)
        if not problems:  # an unreadable file is one problem, not one per missing key as well
            problems += shape_problems
        status = SweepStatus(values["status"])  # one of them: checked_record defaults anything else to failed
        if status in SWEEP_ACTIVE and _alive(values) is False:
            status = SweepStatus.INTERRUPTED  # its driver is gone: a crash, a kill -9 or a reboot
        return SweepRecord(
            id=sweep_id, name=values["name"] or sweep_id, status=status, created=values["created"],
            space=values["space"], base=values["base"], options=values["options"],
            trial_runs=values["trial_runs"], message=values["message"], seconds=values["seconds"],
            best_run=values["best_run"], ray_start_s=values["ray_start_s"], problems=problems, owner=values["owner"],
        )

    def list(self) -> builtins.list[SweepRecord]:
        return [self.read(i) for i in self.ids()]

    def trials(self, record: SweepRecord) -> builtins.list[RunRecord]:
        """The sweep's runs: those the record lists, and any run tagged with it (a trial
        that started after the record's last write)."""
        tagged = [r for r in self.runs.list() if r.sweep == record.id]
        known = {r.id for r in tagged}
        listed = [self.runs.read(rid) for rid in record.trial_runs if rid not in known and (self.runs.root / rid).is_dir()]
        return sorted(tagged + listed, key=lambda r: r.id)

    def not_created(self, record: SweepRecord, trials: builtins.list[RunRecord]) -> builtins.list[dict]:
        """The planned trials Ray has not created yet (`trials`: those it has): one dict of
        varied values each, a grid's own values and None for a sampled setting (drawn when
        the trial starts). A grid's combinations, each run once per draw, less those of the
        trials that exist, so the plan is right whatever order Ray creates them in."""
        planned = record.options.get("trials")
        if not isinstance(planned, int) or isinstance(planned, bool) or planned <= len(trials):
            return []
        grids = [d for d in record.space if d.get("kind") == "grid" and isinstance(d.get("values"), list) and d["values"]]
        combos = [dict(zip((d["name"] for d in grids), values)) for values in itertools.product(*(d["values"] for d in grids))]
        plan = [combos[i % len(combos)] for i in range(planned)]
        for run in trials:
            made = {name: run.config.get(name) for name in (d["name"] for d in grids)}
            if made in plan:
                plan.remove(made)
        sampled = {d["name"]: None for d in record.space if d not in grids}
        return [{**sampled, **combo} for combo in plan[:planned - len(trials)]]

    def trash(self, sweep_id: str) -> builtins.list[str]:
        """Move an ended sweep's trial runs to the run store's trash (restorable on Train)
        and its record, log and Ray state to `<trash>/.sweeps/`; returns the trial ids."""
        record = self.read(sweep_id)
        if record.status in SWEEP_ACTIVE:
            raise UserError("stop this sweep before deleting it")
        trials = self.trials(record)
        if any(run.status in ACTIVE for run in trials):  # a worker still training it (its driver was killed)
            raise UserError("a trial of this sweep is still training; stop it on the Train page first")
        moved = [run.id for run in trials]
        for run_id in moved:
            self.runs.trash(run_id)
        target = self.runs.trash_root / SWEEPS_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        for path in (self.path(sweep_id), self.log_path(sweep_id), self.storage_path(sweep_id), self.stop_path(sweep_id)):
            if not os.path.lexists(path):
                continue
            older = target / path.name  # a sweep with this id deleted before: the newer one wins
            if older.is_dir() and not older.is_symlink():
                shutil.rmtree(older)
            elif os.path.lexists(older):
                older.unlink()
            path.rename(older)
        return moved

    def request_stop(self, sweep_id: str) -> None:
        """Ask the sweep's driver to stop every trial (it polls for this file)."""
        self.path(sweep_id)  # validates the id
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop_path(sweep_id).touch()
