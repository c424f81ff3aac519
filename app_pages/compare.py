"""Compare: every run and shipped model in one table, curves overlaid, what differs,
what a model gets wrong, and the report's Table 1 beside ours."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fmnist_core.analysis.metrics import config_differences, describe_differences
from fmnist_core.base import paths
from fmnist_core.base.table1 import TABLE1, table1_results, table1_rows
from fmnist_core.base.words import counted
from fmnist_core.formats.checkpoint import CheckpointError
from fmnist_core.images.data import CLASSES
from fmnist_core.store.catalog import Comparable, EntryKey, Source, best_first, list_comparable
from ui.charts import confusion_chart, identical_runs, per_class_chart, runs_overlay_chart
from ui.every_model import unique_names
from ui.explain_panel import mistake_pictures, model_card_download
from ui.leaderboard import show_leaderboard
from ui.photoset_panel import photoset_column, photoset_columns
from ui.state import run_analysis, run_manager
from ui.tables import TABLE1_SHOWN, TABLE1_VIEW, csv_text, frame_csv, is_cancelled_unstarted, rows_frame, runs_table, show_table, table1_csv, table1_frame
from ui.text import literal, plain

# What fits 1400 px without a sideways scroll (tests/e2e: tables fit); the rest: column menu and CSV.
TABLE_COLUMNS = ["name", "source", "status", "model", "lr", "batch_size", "test_accuracy", "best_test_accuracy"]

OVERLAID_BY_DEFAULT = 3  # the best finished entries with a history

st.title("Compare")
st.caption("Runs trained here, the models shipped with the Studio (trained elsewhere, with their history), and the "
           "report's Table 1 as reproduced in `results/` (figures only where the run is not on this machine).")
records = run_manager().list_runs()
entries = list_comparable(records)
for entry in entries:
    for problem in entry.problems:
        st.warning(plain(f"Run {entry.key.ident}: {problem}. Shown with what could be read."))  # folder names are user text
if not entries:
    st.info("Nothing to compare yet. Train a model on the Train page, or run `python -m fmnist_core reproduce`.")
    st.stop()

by_key: dict[str, Comparable] = {e.key: e for e in entries}  # str: a widget gives back a plain str of the EntryKey it was offered
table = rows_frame([e.row for e in entries], show_cancelled=True)


def entry_label(key: str) -> str:
    entry = by_key[key]
    accuracy = f"{entry.test_accuracy:.2f}%" if entry.test_accuracy is not None else "no test figure"
    return f"{entry.name} · {entry.row.get('model') or '?'} · {accuracy} ({entry.row['source']})"


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
shown, photoset_accuracy = photoset_columns(shown, {e.key: e.weights for e in entries})
# the other columns: the table's column menu and the CSV
runs_table(shown, [*TABLE_COLUMNS, *photoset_accuracy], key="runs_overview", extra={c: photoset_column(c) for c in photoset_accuracy})
st.download_button("Download this table (CSV)", csv_text(shown), "runs.csv", "text/csv", key="download_table")
visible = set(shown["id"])  # what the filters keep: the views below offer only these

# ---- the views' contents ----------------------------------------------------------------------


def show_mistakes(entry: Comparable) -> None:
    """Confusion matrix, per-class accuracy and the most confident mistakes of one model."""
    assert entry.weights is not None  # only an entry with weights is shown in depth
    try:
        analysis = run_analysis(str(entry.weights))
    except CheckpointError as e:
        st.warning(f"Cannot score this model: {plain(str(e))}")
        return
    matrix = analysis.matrix
    left, right = st.columns([3, 2])
    left.altair_chart(confusion_chart(matrix, list(CLASSES)), width="stretch")
    right.altair_chart(per_class_chart(list(CLASSES), analysis.per_class_accuracy, height=420,
                                       title=f"Per-class accuracy (overall {analysis.accuracy:.2f}%)"), width="stretch")
    worst_true, _ = analysis.worst_confusion()
    a, b = st.columns(2)
    true_class = a.selectbox("True class", CLASSES, index=worst_true, key="mistake_true")
    t = CLASSES.index(true_class)
    confusions = analysis.confusions(t)  # every other class, most frequent mistake first
    counts = dict(confusions)
    # Keyed by the true class: its options are the other nine classes, never the true one.
    p = b.selectbox("Mistaken for", [p for p, _ in confusions], key=f"mistake_pred_{t}",
                    format_func=lambda c: f"{CLASSES[c]} ({counted(counts[c], 'image')})")
    indices = analysis.mistakes(t, p)
    st.caption(f"{counted(counts[p], 'test image')} of **{true_class}** predicted as **{CLASSES[p]}**"
               + (f"; the {counted(len(indices), 'most confident mistake')}:" if indices else "."))
    if indices:
        grid = st.columns(8)
        for k, (index, picture) in enumerate(zip(indices, mistake_pictures(entry.weights, indices, p))):
            probs = analysis.probabilities[index]
            grid[k % 8].image(picture,
                              caption=f"#{index}: {CLASSES[p]} {probs[p]:.0%}, {true_class} {probs[t]:.0%}")


def show_figures_only(entry: Comparable) -> None:
    """A reproduced Table 1 row whose run and weights are on another machine."""
    recipe = entry.key.ident
    figures = [f"test accuracy {entry.test_accuracy:.2f}%" if entry.test_accuracy is not None else "no test figure",
               f"status {entry.status}"]
    st.info(f"Trained on another machine ({', '.join(figures)}, from `results/table1.csv`); its weights and history are not "
            f"shipped, so there is no confusion matrix to show. `python -m fmnist_core reproduce --only {recipe}` retrains it "
            "here, and it then appears as a run of this machine.")


def curves_view() -> None:
    """The entries chosen, their curves overlaid, and what differs between them."""
    with_history = [e.key for e in entries if e.history and e.key in visible]
    # ?runs=id1,id2 (the Sweep page's "Compare these") preselects those runs
    asked = [key for rid in st.query_params.get("runs", "").split(",") if (key := EntryKey.of(Source.RUN, rid)) in with_history]
    default = asked or [e.key for e in best_first(entries) if e.history and e.key in visible][:OVERLAID_BY_DEFAULT]
    selected = st.multiselect("Runs to compare (the best finished ones to start with)", with_history, default=default,
                              key="compare_runs", format_func=entry_label)
    if selected:
        names = dict(zip(selected, unique_names([by_key[key].name for key in selected])))  # chart series need distinct names
        histories = {names[key]: by_key[key].history for key in selected}
        if len(selected) > 1:
            st.info("Config: " + plain(describe_differences(config_differences({names[key]: by_key[key].config for key in selected}))))  # names and run names are user text
        for group in identical_runs(histories):  # drawn a hair apart on the epoch axis, and said here
            st.caption(f":material/content_copy: Identical numbers (same config and seed): {', '.join(literal(n) for n in group)}")
        log_loss = st.toggle("Log scale (loss)", key="compare_log_loss")
        left, right = st.columns(2)
        left.altair_chart(runs_overlay_chart(histories, "accuracy"), width="stretch")
        right.altair_chart(runs_overlay_chart(histories, "loss", log_scale=log_loss), width="stretch")
        long = pd.DataFrame([{"run": names[key], "run_id": key, **h} for key in selected for h in by_key[key].history])
        st.download_button("Download the selected runs' histories (CSV)", frame_csv(long), "histories.csv", "text/csv", key="download_histories")


def mistakes_view() -> None:
    """One model in depth: its confusion matrix, per-class accuracy and most confident mistakes."""
    openable = list(shown["id"])
    best_with_weights = [e.key for e in best_first(entries) if e.weights is not None and e.key in visible]
    if openable:
        focus = st.selectbox("Model", openable, index=openable.index(best_with_weights[0]) if best_with_weights else 0,
                             key="focus_run", format_func=entry_label)
        chosen = by_key[focus]
        if chosen.weights is not None:
            model_card_download(chosen.weights, chosen.name)
            show_mistakes(chosen)
        elif chosen.source is Source.TABLE1:
            show_figures_only(chosen)
        else:
            st.info(f"No weights saved yet (status: {chosen.status}): a run saves them after its first epoch.")
    else:
        st.caption("No model matches the filters above.")


def table1_view() -> None:
    """The report's Table 1 beside ours."""
    st.subheader("The report's Table 1, reproduced")
    st.caption("\"The report\" is the seed study this Studio grew from: five models on Fashion-MNIST, its Figure 2 and "
               "Table 1. Ours: from runs of this machine named after a report recipe where there are any, else from "
               "`results/table1.csv`, written by `python -m fmnist_core reproduce`.")
    rows = table1_frame(table1_rows(table1_results(records, paths.results_dir() / "table1.csv")))
    show_table(rows, TABLE1_VIEW, "table1", TABLE1_SHOWN)  # epochs and time: the column menu and the CSV
    st.download_button("Download Table 1 (CSV)", table1_csv(rows), "table1.csv", "text/csv", key="download_table1")
    if rows["status"].eq("").all():
        st.caption(f"None of the {len(TABLE1)} rows is reproduced yet: run `python -m fmnist_core reproduce` (or train the report_* presets).")


# ---- the views --------------------------------------------------------------------------------
# A tab's content runs only while it is open (a switch reruns the page): a visit draws the table
# and one view, not four, so the page's first paint does not wait for every chart, picture and
# table below it. The address bar holds the view (?view=Table+1: Home's link to the report).
VIEWS = {"Curves": curves_view, "Leaderboard": lambda: show_leaderboard(records),
         "What a model gets wrong": mistakes_view, "Table 1": table1_view}
for tab, draw in zip(st.tabs(list(VIEWS), key="view", on_change="rerun", bind="query-params"), VIEWS.values()):
    with tab:
        if tab.open:
            draw()
