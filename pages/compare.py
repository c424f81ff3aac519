"""Compare: every run in one table, curves overlaid, what differs, and what a model gets wrong."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from fmnist_core.checkpoint import CheckpointError
from fmnist_core.data import CLASSES
from fmnist_core.metrics import config_differences, describe_differences
from fmnist_core.reproduce import TABLE1_COLUMNS, results_from_runs, table1_rows
from ui.charts import confusion_chart, runs_overlay_chart
from ui.state import dataset, run_analysis, run_manager

st.title("Compare")
records = run_manager().list_runs()
for record in records:
    for problem in record.problems:
        st.warning(f"Run {record.id}: {problem}. Shown with what could be read.")
if not records:
    st.info("No runs yet. Train some on the Train page, or run `python -m fmnist_core reproduce`.")
    st.stop()

by_id = {r.id: r for r in records}
table = pd.DataFrame([r.summary() for r in records])

# ---- the table, with filters --------------------------------------------------------------
f1, f2, f3 = st.columns([2, 2, 3])
models = f1.multiselect("Model", sorted(table["model"].dropna().unique()), key="filter_model")
statuses = f2.multiselect("Status", sorted(table["status"].unique()), key="filter_status")
text = f3.text_input("Name contains", key="filter_text")
shown = table
if models:
    shown = shown[shown["model"].isin(models)]
if statuses:
    shown = shown[shown["status"].isin(statuses)]
if text:
    shown = shown[shown["name"].str.contains(text, case=False, regex=False)]
columns = ["name", "status", "model", "optimizer", "lr", "batch_size", "init", "patch", "augment", "epochs", "params",
           "train_accuracy", "test_accuracy", "best_test_accuracy", "train_loss_sum", "seconds", "images_per_s"]
st.dataframe(
    shown[columns], hide_index=True, width="stretch", key="runs_overview",
    column_config={
        "train_accuracy": st.column_config.NumberColumn("train %", format="%.2f"),
        "test_accuracy": st.column_config.NumberColumn("test %", format="%.2f"),
        "best_test_accuracy": st.column_config.NumberColumn("best test %", format="%.2f"),
        "train_loss_sum": st.column_config.NumberColumn("Loss (report's sum)", format="%.1f", help="Sum of per-batch training losses in the last epoch, as the report's Table 1."),
        "seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
        "images_per_s": st.column_config.NumberColumn("img/s", format="%.0f"),
        "params": st.column_config.NumberColumn("params", format="%d"),
    },
)
st.download_button("Download this table (CSV)", shown.to_csv(index=False), "runs.csv", "text/csv", key="download_table")

# ---- selected runs overlaid -----------------------------------------------------------------
with_history = [rid for rid in shown["id"] if by_id[rid].history]
# ?runs=id1,id2 (the Sweep page's "Compare these") preselects those runs
asked = [rid for rid in st.query_params.get("runs", "").split(",") if rid in with_history]
default = asked or with_history[:2]
selected = st.multiselect("Runs to compare", with_history, default=default, key="compare_runs",
                          format_func=lambda rid: f"{by_id[rid].name} ({by_id[rid].config.get('model')})")
if selected:
    names = {rid: f"{by_id[rid].name} · {rid[-4:]}" for rid in selected}
    histories = {names[rid]: by_id[rid].history for rid in selected}
    if len(selected) > 1:
        st.info("Config: " + describe_differences(config_differences({names[rid]: by_id[rid].config for rid in selected})))
    left, right = st.columns(2)
    left.altair_chart(runs_overlay_chart(histories, "accuracy"), width="stretch")
    right.altair_chart(runs_overlay_chart(histories, "loss"), width="stretch")
    long = pd.DataFrame([{"run": names[rid], "run_id": rid, **h} for rid in selected for h in by_id[rid].history])
    st.download_button("Download the selected runs' histories (CSV)", long.to_csv(index=False), "histories.csv", "text/csv", key="download_histories")

# ---- one run in depth -------------------------------------------------------------------------


def show_mistakes(record) -> None:
    """Confusion matrix, per-class accuracy and the most confident mistakes of one run."""
    try:
        analysis = run_analysis(str(record.weights))
    except CheckpointError as e:
        st.warning(f"Cannot score this run: {e}")
        return
    matrix = analysis.matrix
    left, right = st.columns([3, 2])
    left.altair_chart(confusion_chart(matrix, list(CLASSES)), width="stretch")
    per_class = pd.DataFrame({"class": CLASSES, "accuracy": analysis.per_class_accuracy})
    right.altair_chart(
        alt.Chart(per_class, height=420, title=f"Per-class accuracy (overall {analysis.accuracy:.2f}%)").mark_bar().encode(
            x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 100]), title="%"), y=alt.Y("class:N", sort=list(CLASSES), title=None),
            tooltip=["class", alt.Tooltip("accuracy:Q", format=".2f")]),
        width="stretch",
    )
    _, worst_true, worst_pred = max((matrix[t][p], t, p) for t in range(10) for p in range(10) if t != p)
    a, b = st.columns(2)
    true_class = a.selectbox("True class", CLASSES, index=worst_true, key="mistake_true")
    predicted = b.selectbox("Predicted as", CLASSES, index=worst_pred, key="mistake_pred")
    t, p = CLASSES.index(true_class), CLASSES.index(predicted)
    indices = analysis.mistakes(t, p)
    st.caption(f"{matrix[t][p]} test images of **{true_class}** predicted as **{predicted}**" + (f"; the {len(indices)} most confident:" if indices else "."))
    if indices:
        images = dataset().test_images[indices].numpy()
        grid = st.columns(8)
        for k, (index, image) in enumerate(zip(indices, images)):
            probs = analysis.probabilities[index]
            grid[k % 8].image(np.kron(image, np.ones((3, 3), np.uint8)), clamp=True,
                              caption=f"#{index}: {predicted} {probs[p]:.0%}, {true_class} {probs[t]:.0%}")


st.subheader("What a model gets wrong")
analysable = [rid for rid in (selected or with_history) if by_id[rid].weights is not None]
if analysable:
    focus = st.selectbox("Run", analysable, key="focus_run", format_func=lambda rid: by_id[rid].name)
    show_mistakes(by_id[focus])
else:
    st.caption("Select a run that saved weights to see its confusion matrix and mistakes.")

# ---- the report's Table 1 beside ours -----------------------------------------------------------
st.subheader("The report's Table 1, reproduced")
reproduced = results_from_runs(records)
if reproduced:
    rows = pd.DataFrame(table1_rows(reproduced))
    st.dataframe(rows[[key for _, key in TABLE1_COLUMNS]].rename(columns={key: title for title, key in TABLE1_COLUMNS}),
                 hide_index=True, width="stretch", key="table1")
else:
    st.caption("Run `python -m fmnist_core reproduce` (or train the report_* presets) to fill in our side of the table.")
