"""The Sweep page's helpers: turn the form into a checked SweepSpec, hold the server's sweep
launcher (fmnist_core.sweeps.sweep_launch), and turn the run store's trials into a table and a chart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import altair as alt
import pandas as pd
import streamlit as st

from fmnist_core.base.statuses import RunStatus, SweepStatus
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, TrainConfig
from fmnist_core.modeling.recipes import CUSTOM, recipe_config
from fmnist_core.store.run_store import RunRecord, RunStore, best_test_accuracy
from fmnist_core.sweeps.sweep import SweepSpec
from fmnist_core.sweeps.sweep_launch import SweepLauncher
from fmnist_core.sweeps.sweep_space import Dimension, parse_grid, parse_sample
from fmnist_core.sweeps.sweep_store import SweepRecord
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
        assert declared.low is not None and declared.high is not None  # a number setting: its range is declared
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


def space_dimension(name: str, how: str, text: str) -> Dimension:
    """One form row (a setting, how it varies, the values typed) as a checked Dimension;
    SpaceError names the field's problem as `sweep` would."""
    compact = ",".join(part.strip() for part in text.replace(";", ",").split(",") if part.strip())
    if how == "grid":
        return parse_grid(f"{name}={compact}")
    if how == "choice":
        return parse_sample(f"{name}=choice:{compact}")
    return parse_sample(f"{name}={how}:{text.replace(' ', '')}")


@dataclass
class SweepForm:
    """What the Sweep form holds: `varied` is (setting, how, values typed) per varied setting."""

    preset: str  # a recipe, or CUSTOM: `model` with default settings
    model: str
    epochs: int
    varied: list[tuple[str, str, str]]
    trials: int
    search: str
    at_once: int
    early_stop: str
    subset: int  # 0: every image
    name: str

    @property
    def sampled(self) -> bool:
        return any(how != "grid" for _, how, _ in self.varied)

    def spec(self) -> SweepSpec:
        """The checked SweepSpec of the form; a UserError names its first problem, exactly as
        `sweep` would. Trials and search count only when a setting is sampled."""
        name = self.name.strip()
        # the sweep's name names its base config, as `sweep --name` does
        base = (recipe_config(self.preset, epochs=self.epochs, name=name) if self.preset != CUSTOM
                else TrainConfig(model=self.model, epochs=self.epochs, name=name))
        space = [space_dimension(*row) for row in self.varied]
        space.sort(key=lambda d: d.kind != "grid")  # grids first, as `sweep` reads --grid before --sample
        return SweepSpec(base=base, space=space, trials=self.trials if self.sampled else None,
                         search=self.search if self.sampled else "random", early_stop=self.early_stop,
                         max_concurrent=self.at_once, subset=self.subset or None, name=name).check()


@st.cache_resource
def sweep_launcher() -> SweepLauncher:
    """One per server process: the sweep drivers it started, whatever the session."""
    return SweepLauncher(RunStore(), studio_policy())


def _rounded(value, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def trial_rows(trials: list[RunRecord], varied: list[str], not_created: Sequence[dict] = (), sweep_active: bool = True,
               epochs: int | None = None) -> pd.DataFrame:
    """One row per trial: its varied values, status, epochs, best test accuracy (%, two
    decimals), seconds (whole); the figures are numbers (NaN before a trial's first epoch),
    so the table sorts them as numbers and shows a missing one as ui.tables' placeholder.
    Then one row per planned trial Ray has not created (SweepStore.not_created): queued
    while the sweep runs, cancelled once it has ended without them."""
    rows = []
    for run in trials:
        last = run.history[-1] if run.history else {}
        rows.append({
            "run": run.id, **{name: run.config.get(name) for name in varied}, "status": run.status,
            "epoch": f"{len(run.history)}/{run.config.get('epochs')}", "best_test_accuracy": _rounded(best_test_accuracy(run.history), 2),
            "seconds": _rounded(last.get("elapsed_s"), 0), "message": (run.result or {}).get("message", ""),
        })
    status, message = ((RunStatus.QUEUED, "waiting for Ray to start it") if sweep_active
                       else (RunStatus.CANCELLED, "never started: the sweep ended first"))
    for values in not_created:
        rows.append({"run": None, **{name: values.get(name) for name in varied}, "status": status, "epoch": f"0/{epochs}",
                     "best_test_accuracy": None, "seconds": None, "message": message})
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


def picker_label(sweep_id: str, record: SweepRecord | None, status: SweepStatus) -> str:
    """The sweep's name and status, then its id when the name is not the id."""
    if record is None or record.name == sweep_id:
        return f"{sweep_id} · {status}"
    return f"{record.name} · {status} · {sweep_id}"


def picker_key_of(labels: dict[str, str]) -> str:
    """The Sweep picker's widget key, new whenever a label changes. The labels carry each
    sweep's status; Streamlit goes on showing a keyed selectbox's old label when only the label
    changes (it showed "starting" for a whole sweep), and a browser sending that old label back
    loses the choice. The chosen sweep itself is kept in SweepState."""
    return "sweep_pick_" + hashlib.sha1("\n".join(labels.values()).encode()).hexdigest()[:12]
