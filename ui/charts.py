"""Altair charts built from plain run data (lists of dicts), so they are easy to test."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

SPLIT_COLORS = {"train": "#4c78a8", "validation": "#72b7b2", "test": "#f58518"}
SPLITS = {"train": "train", "validation": "val", "test": "test"}  # split -> history key prefix
MAX_LISTED_EPOCHS = 25  # up to this many epochs every one gets a tick; beyond, integer ticks only
DUPLICATE_OFFSET = 0.08  # epochs: how far identical runs are drawn apart in the overlay


def epoch_axis(history: list[dict], epochs_planned: int | None = None) -> alt.X:
    """Whole-number epoch ticks ("1", never "1.000000"), over the planned epochs when known,
    so a live chart does not rescale as epochs arrive."""
    last = max([h["epoch"] for h in history] + [epochs_planned or 0, 1])
    values = list(range(1, last + 1)) if last <= MAX_LISTED_EPOCHS else alt.Undefined
    return alt.X("x:Q", title="epoch", scale=alt.Scale(domain=[0.5, last + 0.5], nice=False, zero=False),
                 axis=alt.Axis(format="d", tickMinStep=1, values=values, grid=False))


def loss_scale(metric: str, log_scale: bool) -> alt.Scale:
    return alt.Scale(type="log") if metric == "loss" and log_scale else alt.Scale(zero=False)


def epoch_frame(history: list[dict], metric: str) -> pd.DataFrame:
    """Long format (epoch, split, value) for metric 'accuracy' or 'loss'; only splits with data."""
    rows = []
    for record in history:
        for split, prefix in SPLITS.items():
            if record.get(f"{prefix}_{metric}") is not None:
                rows.append({"epoch": int(record["epoch"]), "split": split, "value": record[f"{prefix}_{metric}"]})
    return pd.DataFrame(rows, columns=["epoch", "split", "value"])


def epoch_chart(history: list[dict], metric: str, epochs_planned: int | None = None, log_scale: bool = False,
                height: int = 260) -> alt.Chart:
    title = "Accuracy (%)" if metric == "accuracy" else "Loss (mean per batch)"
    frame = epoch_frame(history, metric).assign(x=lambda f: f["epoch"])
    present = [s for s in SPLIT_COLORS if s in set(frame["split"])]  # no legend entry without data
    color = alt.Color("split:N", title=None, scale=alt.Scale(domain=present, range=[SPLIT_COLORS[s] for s in present]),
                      legend=alt.Legend(orient="bottom"))
    return (
        alt.Chart(frame, height=height, title=title)
        .mark_line(point=alt.OverlayMarkDef(size=60, filled=True))
        .encode(
            x=epoch_axis(history, epochs_planned),
            y=alt.Y("value:Q", scale=loss_scale(metric, log_scale), title=None),
            color=color,
            tooltip=[alt.Tooltip("epoch:Q", format="d"), "split", alt.Tooltip("value:Q", format=".4f")],
        )
    )


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


MAX_CHART_POINTS = 500  # a live chart redrawn every second must stay cheap to build and render


def batch_loss_chart(points: list[tuple[int, float]], total_steps: int | None = None, smoothing: float = 0.9,
                     log_scale: bool = False, height: int = 220) -> alt.Chart:
    """Raw and smoothed per-batch training loss over the whole run's batches (x fixed from
    0 to `total_steps` while it trains, rather than rescaling every second)."""
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    frame = pd.DataFrame({"step": steps, "loss": losses, "smoothed": smooth(losses, smoothing) if losses else []})
    if len(frame) > MAX_CHART_POINTS:  # smooth on every point, draw an even subsample
        frame = frame.iloc[:: -(-len(frame) // MAX_CHART_POINTS)]
    end = max([total_steps or 0, *steps, 1])
    x = alt.X("step:Q", title="batch", scale=alt.Scale(domain=[0, end], nice=False), axis=alt.Axis(format=",d"))
    y_scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=False)
    title = "Training loss per batch" + (f" (smoothed {smoothing:g})" if smoothing else "")
    base = alt.Chart(frame, height=height, title=title).encode(x=x)
    raw = base.mark_line(opacity=0.25 if smoothing else 1.0, color="#4c78a8").encode(y=alt.Y("loss:Q", title=None, scale=y_scale))
    if not smoothing:
        return raw.encode(tooltip=["step", alt.Tooltip("loss:Q", format=".4f")])
    return raw + base.mark_line(color="#4c78a8").encode(y=alt.Y("smoothed:Q", scale=y_scale),
                                                       tooltip=["step", alt.Tooltip("smoothed:Q", format=".4f")])


LOSS_CHART_SECONDS = 5  # how often a live per-batch loss chart takes in new points


@st.cache_data(ttl=LOSS_CHART_SECONDS, max_entries=32, show_spinner=False)
def shared_batch_loss_spec(run_id: str, status: str, total_steps: int | None, smoothing: float, log_scale: bool,
                           _points: list[tuple[int, float]]) -> dict:
    """batch_loss_chart's Vega-Lite spec for a run, shared by every session that shows it
    and kept for LOSS_CHART_SECONDS (a new status starts a new one at once). Each open Train
    page polls its run every second: built there with Altair (objects, then schema
    validation) the chart was nearly all of a poll's CPU (45 ms), and redrawn in every
    browser each second it kept the visitors' CPUs busy too; an unchanged spec is not
    redrawn. `_points` is not hashed: the run, status and time window stand for it."""
    return batch_loss_chart(_points, total_steps, smoothing, log_scale).to_dict()


def identical_runs(histories: dict[str, list[dict]]) -> list[list[str]]:
    """Groups of runs whose histories are the same numbers (same seed and config): drawn
    on top of each other they would look like one run."""
    groups: dict[str, list[str]] = {}
    for name, history in histories.items():
        fingerprint = repr([(h.get("epoch"), h.get("train_loss"), h.get("test_accuracy"), h.get("test_loss")) for h in history])
        groups.setdefault(fingerprint, []).append(name)
    return [names for names in groups.values() if len(names) > 1]


OVERLAY_SPLITS = {"test": "test (solid)", "train": "train (dashed)"}


def runs_overlay_chart(histories: dict[str, list[dict]], metric: str, log_scale: bool = False, height: int = 300) -> alt.LayerChart | alt.FacetChart:
    """One colour per run; test solid, train dashed, and the legend says which is which.
    Hovering shows every run's value at that epoch (as TensorBoard does). Runs are drawn a
    hair apart on the epoch axis so that identical runs do not hide each other."""
    names = list(histories)
    rows = []
    for i, (run_name, history) in enumerate(histories.items()):
        offset = (i - (len(names) - 1) / 2) * DUPLICATE_OFFSET if len(names) > 1 else 0.0
        for record in history:
            for split, label in OVERLAY_SPLITS.items():
                value = record.get(f"{split}_{metric}")
                if value is not None:
                    # "series" is a plain field name for the pivot (a run's name may hold dots or quotes)
                    rows.append({"run": run_name, "epoch": int(record["epoch"]), "x": record["epoch"] + offset,
                                 "split": label, "series": f"r{i}_{split}", "value": value})
    frame = pd.DataFrame(rows, columns=["run", "epoch", "x", "split", "series", "value"])
    series_titles = {f"r{i}_{split}": f"{name} · {split}" for i, name in enumerate(names) for split in OVERLAY_SPLITS}
    title = "Accuracy (%)" if metric == "accuracy" else "Loss (mean)"
    all_history = [h for history in histories.values() for h in history]
    x = epoch_axis(all_history)
    y = alt.Y("value:Q", scale=loss_scale(metric, log_scale), title=None)
    color = alt.Color("run:N", title="run", scale=alt.Scale(domain=names), legend=alt.Legend(orient="bottom", columns=2, labelLimit=260))
    dashes = {"test (solid)": [1, 0], "train (dashed)": [5, 4]}
    present = [label for label in dashes if label in set(frame["split"])]  # no legend entry without data
    dash = alt.StrokeDash("split:N", title="line", scale=alt.Scale(domain=present, range=[dashes[label] for label in present]),
                          legend=alt.Legend(orient="bottom", symbolType="stroke", symbolStrokeColor="#555", symbolStrokeWidth=2))
    base = alt.Chart(frame, height=height, title=title)
    lines = base.mark_line().encode(x=x, y=y, color=color, strokeDash=dash)
    points = base.mark_point(filled=True, size=45).encode(x=x, y=y, color=alt.Color("run:N", scale=alt.Scale(domain=names), legend=None))
    hover = alt.selection_point(name="hover", fields=["epoch"], nearest=True, on="pointerover", clear="pointerout", empty=False)
    series = [s for s in series_titles if s in set(frame["series"])]
    rule = (
        base.transform_pivot("series", value="value", groupby=["epoch"])
        .mark_rule(color="#888")
        .encode(x=alt.X("epoch:Q"), opacity=alt.condition(hover, alt.value(0.6), alt.value(0)),
                tooltip=[alt.Tooltip("epoch:Q", format="d"),
                         *(alt.Tooltip(f"{s}:Q", title=series_titles[s], format=".4f") for s in series)])
        .add_params(hover)
    )
    return alt.layer(lines, points, rule)


def probability_chart(classes: list[str], probabilities: list[float], height: int = 260) -> alt.Chart:
    frame = pd.DataFrame({"class": classes, "probability": probabilities})
    top = frame["probability"].idxmax()
    frame["top"] = frame.index == top
    return (
        alt.Chart(frame, height=height)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
            y=alt.Y("class:N", sort=list(classes), title=None, axis=alt.Axis(labelOverlap=False)),
            color=alt.condition("datum.top", alt.value("#f58518"), alt.value("#4c78a8")),
            tooltip=["class", alt.Tooltip("probability:Q", format=".2%")],
        )
    )


def per_class_chart(classes: Sequence[str], accuracy: Sequence[float | None], height: int, title: str, decimals: int = 2) -> alt.Chart:
    """A bar per class: its accuracy in %, classes in data-set order (a class with no item, None, is left out)."""
    frame = pd.DataFrame({"class": classes, "accuracy": accuracy}).dropna()
    return alt.Chart(frame, height=height, title=title).mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 100]), title="%"), y=alt.Y("class:N", sort=list(classes), title=None),
        tooltip=["class", alt.Tooltip("accuracy:Q", format=f".{decimals}f")])


def confusion_chart(matrix: list[list[int]], classes: list[str], height: int = 420, title: str = "Confusion matrix (test set)") -> alt.Chart:
    rows = [{"true": classes[t], "predicted": classes[p], "count": matrix[t][p]} for t in range(len(classes)) for p in range(len(classes))]
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame, height=height, title=title).encode(
        x=alt.X("predicted:N", sort=list(classes)), y=alt.Y("true:N", sort=list(classes))
    )
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues", type="symlog")), tooltip=["true", "predicted", "count"])
    text = base.mark_text(fontSize=10).encode(text="count:Q", color=alt.condition("datum.count > 300", alt.value("white"), alt.value("black")))
    return heat + text
