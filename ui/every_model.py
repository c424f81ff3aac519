"""'Every model' on Predict: one input through many models, as one table and one heatmap
that stay readable from 1 model to 30, at desktop width and on a phone."""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import pandas as pd

from ui.text import plain

ROW_PX = 24  # heatmap row height per model
NAME_LABEL_PX = 150  # longer model names are cut with an ellipsis on the heatmap's axis (the table has them whole)


@dataclass(frozen=True)
class ModelAnswer:
    """One model's answer for the shown input, in plain numbers."""

    name: str  # unique on the page
    test_accuracy: float | None  # percent
    probabilities: list[float]  # one per class


NON_BREAKING_HYPHEN = "\u2011"


def unbreakable(text: str) -> str:
    """Hyphens that a line cannot break at: a run id or 'T-shirt/top' wraps only at spaces."""
    return text.replace("-", NON_BREAKING_HYPHEN)


def answers_frame(answers: list[ModelAnswer], classes: list[str]) -> pd.DataFrame:
    """A row per model (the index): test accuracy, and its answer: the top class with its
    probability. Three narrow columns, as text for st.table, so that 30 rows fit at 1400 px
    and the table fits a 390 px phone without scrolling sideways."""
    rows = []
    for answer in answers:
        top = max(range(len(classes)), key=lambda i: answer.probabilities[i])
        rows.append({
            "Model": plain(unbreakable(answer.name)),  # st.table renders its cells as Markdown
            "Test acc.": f"{answer.test_accuracy:.1f}%" if answer.test_accuracy is not None else "",
            "Top class": f"{unbreakable(classes[top])} {answer.probabilities[top]:.0%}",
        })
    return pd.DataFrame(rows, columns=["Model", "Test acc.", "Top class"]).set_index("Model")


def probability_heatmap(answers: list[ModelAnswer], classes: list[str]) -> alt.Chart:
    """Models down, classes across, colour = probability; each model's row sums to 1."""
    frame = pd.DataFrame([{"model": a.name, "class": c, "probability": p} for a in answers for c, p in zip(classes, a.probabilities)])
    order = [a.name for a in answers]
    # Bottom labels at -45 degrees end at their tick, so the last one ("Ankle boot") does not
    # reach past the chart's right edge on a phone.
    base = alt.Chart(frame, height=alt.Step(ROW_PX), title="Probability of each class, per model").encode(
        x=alt.X("class:N", sort=list(classes), title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=False)),
        y=alt.Y("model:N", sort=order, title=None, axis=alt.Axis(labelLimit=NAME_LABEL_PX, labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("probability:Q", scale=alt.Scale(domain=[0, 1], scheme="blues"),
                        legend=alt.Legend(format="%", orient="bottom", gradientLength=160, title="probability")),
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
