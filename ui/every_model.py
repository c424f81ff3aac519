"""'Every model' on Predict: one input through many models, as one table and one heatmap
that stay readable from 1 model to 30, at desktop width and on a phone."""

from __future__ import annotations

import re
from dataclasses import dataclass

import altair as alt
import pandas as pd

ROW_PX = 24  # heatmap row height per model
NAME_LABEL_PX = 150  # longer model names are cut with an ellipsis on the heatmap's axis (the table has them whole)


@dataclass(frozen=True)
class ModelAnswer:
    """One model's answer for the shown input, in plain numbers."""

    name: str  # unique on the page
    test_accuracy: float | None  # percent
    probabilities: list[float]  # one per class


def answers_frame(answers: list[ModelAnswer], classes: list[str]) -> pd.DataFrame:
    """A row per model: name, test accuracy, top class, its probability (as text for st.table)."""
    rows = []
    for answer in answers:
        top = max(range(len(classes)), key=lambda i: answer.probabilities[i])
        rows.append({
            "Model": answer.name,
            "Test accuracy": f"{answer.test_accuracy:.2f}%" if answer.test_accuracy is not None else "",
            "Top class": classes[top],
            "Probability": f"{answer.probabilities[top]:.1%}",
        })
    return pd.DataFrame(rows, columns=["Model", "Test accuracy", "Top class", "Probability"]).set_index("Model")


def probability_heatmap(answers: list[ModelAnswer], classes: list[str]) -> alt.Chart:
    """Models down, classes across, colour = probability; each model's row sums to 1."""
    frame = pd.DataFrame([{"model": a.name, "class": c, "probability": p} for a in answers for c, p in zip(classes, a.probabilities)])
    order = [a.name for a in answers]
    base = alt.Chart(frame, height=ROW_PX * len(answers) + 10, title="Probability of each class, per model").encode(
        x=alt.X("class:N", sort=list(classes), title=None, axis=alt.Axis(labelAngle=-45, orient="top")),
        y=alt.Y("model:N", sort=order, title=None, axis=alt.Axis(labelLimit=NAME_LABEL_PX)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("probability:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"), legend=alt.Legend(format="%", orient="bottom")),
        tooltip=["model", "class", alt.Tooltip("probability:Q", format=".2%")],
    )
    labels = base.mark_text(fontSize=9).encode(
        text=alt.Text("probability:Q", format=".0%"),
        color=alt.condition("datum.probability > 0.5", alt.value("white"), alt.value("#333")),
        opacity=alt.condition("datum.probability >= 0.1", alt.value(1), alt.value(0)),
    )
    return cells + labels


def unique_names(names: list[str]) -> list[str]:
    """Names as given, with ' (2)', ' (3)' added to repeats: rows and axis labels must differ."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def plain(text: str) -> str:
    """User text (a file or run name) for st.markdown, shown as typed: no links, images or formatting."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
