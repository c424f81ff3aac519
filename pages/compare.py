"""Compare: every run in one table, curves overlaid, what differs, and what a model gets wrong."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from fmnist_core.checkpoint import CheckpointError
from fmnist_core.data import CLASSES
from fmnist_core.metrics import config_differences, describe_differences
from fmnist_core.reproduce import TABLE1_COLUMNS, results_from_runs, table1_rows
from ui.charts import confusion_chart, identical_runs, runs_overlay_chart
from ui.explain_panel import mistake_picture, model_card_download
from ui.state import dataset, run_analysis, run_manager
from ui.tables import csv_text, is_cancelled_unstarted, runs_frame, runs_table
from ui.text import literal

TABLE_COLUMNS = ["name", "status", "model", "lr", "batch_size", "params", "test_accuracy", "best_test_accuracy"]

st.title("Compare")
records = run_manager().list_runs()
for record in records:
    for problem in record.problems:
        st.warning(f"Run {record.id}: {problem}. Shown with what could be read.")
if not records:
    st.info("No runs yet. Train some on the Train page, or run `python -m fmnist_core reproduce`.")
    st.stop()

by_id = {r.id: r for r in records}
table = runs_frame(records, show_cancelled=True)

# ---- the table, with filters --------------------------------------------------------------
f1, f2, f3, f4 = st.columns([2, 2, 3, 2], vertical_alignment="bottom")
models = f1.multiselect("Model", sorted(table["model"].dropna().unique()), key="filter_model")
statuses = f2.multiselect("Status", sorted(table["status"].dropna().unique()), key="filter_status")
text = f3.text_input("Name contains", key="filter_text")
show_cancelled = f4.toggle("Show cancelled runs", key="show_cancelled", help="Runs cancelled in the queue, before any epoch.")
shown = table if show_cancelled else table[~is_cancelled_unstarted(table)]
if models:
    shown = shown[shown["model"].isin(models)]
if statuses:
    shown = shown[shown["status"].isin(statuses)]
if text:
    shown = shown[shown["name"].str.contains(text, case=False, regex=False)]
runs_table(shown, TABLE_COLUMNS, key="runs_overview")  # the other columns: the table's column menu and the CSV
st.download_button("Download this table (CSV)", csv_text(shown), "runs.csv", "text/csv", key="download_table")

# ---- selected runs overlaid -----------------------------------------------------------------
with_history = [rid for rid in shown["id"] if by_id[rid].history]
default = with_history[:2]
selected = st.multiselect("Runs to compare", with_history, default=default, key="compare_runs",
                          format_func=lambda rid: f"{by_id[rid].name} ({by_id[rid].config.get('model')})")
if selected:
    names = {rid: f"{by_id[rid].name} · {rid[-4:]}" for rid in selected}
    histories = {names[rid]: by_id[rid].history for rid in selected}
    if len(selected) > 1:
        st.info("Config: " + describe_differences(config_differences({names[rid]: by_id[rid].config for rid in selected})))
    for group in identical_runs(histories):  # drawn a hair apart on the epoch axis, and said here
        st.caption(f":material/content_copy: Identical numbers (same config and seed): {', '.join(literal(n) for n in group)}")
    log_loss = st.toggle("Log scale (loss)", key="compare_log_loss")
    left, right = st.columns(2)
    left.altair_chart(runs_overlay_chart(histories, "accuracy"), width="stretch")
    right.altair_chart(runs_overlay_chart(histories, "loss", log_scale=log_loss), width="stretch")
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
            grid[k % 8].image(mistake_picture(record.weights, index, image, p),
                              caption=f"#{index}: {predicted} {probs[p]:.0%}, {true_class} {probs[t]:.0%}")


st.subheader("What a model gets wrong")
analysable = [rid for rid in (selected or with_history) if by_id[rid].weights is not None]
if analysable:
    focus = st.selectbox("Run", analysable, key="focus_run", format_func=lambda rid: by_id[rid].name)
    model_card_download(by_id[focus].weights, by_id[focus].name)
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
