"""Altair charts built from plain run data (lists of dicts), so they are easy to test."""

from __future__ import annotations

import altair as alt
import pandas as pd

SPLIT_COLORS = alt.Scale(domain=["train", "validation", "test"], range=["#4c78a8", "#72b7b2", "#f58518"])


def epoch_frame(history: list[dict], metric: str) -> pd.DataFrame:
    """Long format (epoch, split, value) for metric 'accuracy' or 'loss'."""
    rows = []
    for record in history:
        for split, key in (("train", f"train_{metric}"), ("validation", f"val_{metric}"), ("test", f"test_{metric}")):
            if record.get(key) is not None:
                rows.append({"epoch": record["epoch"], "split": split, "value": record[key]})
    return pd.DataFrame(rows, columns=["epoch", "split", "value"])


def epoch_chart(history: list[dict], metric: str, height: int = 260) -> alt.Chart:
    title = "Accuracy (%)" if metric == "accuracy" else "Loss (mean per batch)"
    frame = epoch_frame(history, metric)
    return (
        alt.Chart(frame, height=height, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1), title="epoch"),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None),
            color=alt.Color("split:N", scale=SPLIT_COLORS, title=None),
            tooltip=["epoch", "split", alt.Tooltip("value:Q", format=".4f")],
        )
    )


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


MAX_CHART_POINTS = 200  # a live chart redrawn every second must stay cheap to build and render


def batch_loss_chart(points: list[tuple[int, float]], height: int = 220) -> alt.Chart:
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    frame = pd.DataFrame({"step": steps, "loss": losses, "smoothed": smooth(losses)})
    if len(frame) > MAX_CHART_POINTS:  # smooth on every point, draw an even subsample
        frame = frame.iloc[:: -(-len(frame) // MAX_CHART_POINTS)]
    base = alt.Chart(frame, height=height, title="Training loss per batch (smoothed)").encode(x=alt.X("step:Q", title="batch"))
    raw = base.mark_line(opacity=0.25, color="#4c78a8").encode(y=alt.Y("loss:Q", title=None))
    return raw + base.mark_line(color="#4c78a8").encode(y="smoothed:Q", tooltip=["step", alt.Tooltip("smoothed:Q", format=".4f")])


def runs_overlay_chart(histories: dict[str, list[dict]], metric: str, height: int = 300) -> alt.Chart:
    """One colour per run; solid test, dashed train."""
    rows = []
    for run_name, history in histories.items():
        for record in history:
            for split in ("train", "test"):
                value = record.get(f"{split}_{metric}")
                if value is not None:
                    rows.append({"run": run_name, "epoch": record["epoch"], "split": split, "value": value})
    frame = pd.DataFrame(rows, columns=["run", "epoch", "split", "value"])
    title = "Accuracy (%)" if metric == "accuracy" else "Loss (mean)"
    return (
        alt.Chart(frame, height=height, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", scale=alt.Scale(zero=False), title=None),
            color=alt.Color("run:N", title="run"),
            strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["test", "train"], range=[[1, 0], [4, 3]]), title=None),
            tooltip=["run", "split", "epoch", alt.Tooltip("value:Q", format=".4f")],
        )
    )


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


def confusion_chart(matrix: list[list[int]], classes: list[str], height: int = 420) -> alt.Chart:
    rows = [{"true": classes[t], "predicted": classes[p], "count": matrix[t][p]} for t in range(len(classes)) for p in range(len(classes))]
    frame = pd.DataFrame(rows)
    base = alt.Chart(frame, height=height, title="Confusion matrix (test set)").encode(
        x=alt.X("predicted:N", sort=list(classes)), y=alt.Y("true:N", sort=list(classes))
    )
    heat = base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(scheme="blues", type="symlog")), tooltip=["true", "predicted", "count"])
    text = base.mark_text(fontSize=10).encode(text="count:Q", color=alt.condition("datum.count > 300", alt.value("white"), alt.value("black")))
    return heat + text
