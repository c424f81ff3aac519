"""The runs table shared by Train and Compare: typed rows, human columns, a CSV of numbers."""

from __future__ import annotations

import csv
import io

from streamlit.testing.v1 import AppTest

from fmnist_core.base.table1 import TABLE1
from fmnist_core.store.run_store import RunStore
from tests.helpers.pages import as_displayed
from tests.helpers.runs import stored_run
from ui.tables import KINDS, RUN_COLUMNS, TABLE1_SHOWN, TABLE1_VIEW, csv_text, runs_frame


def test_csv_has_numeric_epoch_columns_integer_params_and_blanks(tmp_path):
    store = RunStore(tmp_path / "runs")
    stored_run(store, "half done", epochs_done=1, epochs=2)
    stored_run(store, "never ran", epochs_done=0, status="cancelled")
    rows = list(csv.DictReader(io.StringIO(csv_text(runs_frame(store.list(), show_cancelled=True)))))
    by_name = {r["Name"]: r for r in rows}
    done = by_name["half done"]
    assert done["Epochs done"] == "1" and done["Epochs planned"] == "2"  # numbers, not "1/2"
    assert done["Parameters"] == "2174"  # not 2174.0
    assert done["Test accuracy (%)"] == "80.0" and done["Batch size"] == "32" and done["Learning rate"] == "0.01"
    never = by_name["never ran"]
    assert never["Parameters"] == "" and never["Test accuracy (%)"] == "" and never["Time (s)"] == ""  # blanks, not "None"
    assert "None" not in csv_text(runs_frame(store.list(), show_cancelled=True))


def test_cancelled_runs_without_epochs_are_hidden_unless_asked(tmp_path):
    store = RunStore(tmp_path / "runs")
    stored_run(store, "trained")
    stored_run(store, "cancelled early", epochs_done=0, status="cancelled")
    stored_run(store, "cancelled late", epochs_done=1, status="cancelled")  # has an epoch to look at
    assert sorted(runs_frame(store.list())["name"]) == ["cancelled late", "trained"]
    assert len(runs_frame(store.list(), show_cancelled=True)) == 3
    assert runs_frame([]).empty


def test_every_column_has_a_human_label_wide_enough_for_itself():
    for name, column in RUN_COLUMNS.items():
        assert "_" not in column.label and column.label[0].isupper(), name
        assert column.width >= 6 * len(column.label) + 16, f"{column.label}: {column.width}px cuts its own header"


def test_every_table_column_declares_a_kind_and_table1_fits_940_px():
    """Issue 23: one format per kind of column; Table 1 fits the 940 px of content a 1400 px
    window leaves beside the page list, its Model column as wide as its longest name."""
    for name, column in {**RUN_COLUMNS, **TABLE1_VIEW}.items():
        assert column.kind in KINDS, name
    assert KINDS["percent"][1] == "%.2f" and KINDS["seconds"][1] == "%.0f"
    for column in TABLE1_VIEW.values():
        assert column.width >= 6 * len(column.label) + 16, f"{column.label}: {column.width}px cuts its own header"
    assert sum(TABLE1_VIEW[name].width for name in TABLE1_SHOWN) <= 936
    assert TABLE1_VIEW["model"].width >= 6 * max(len(row.label) for row in TABLE1) + 16


def test_the_sweep_trials_table_rounds_and_blanks_like_every_table(tmp_path):
    """Issue 23: the trials table had its own formats and showed "None" for a trial with no
    epoch yet; it now declares kinds like every other table."""
    store = RunStore(tmp_path / "runs")
    stored_run(store, "two epochs", epochs_done=2, epochs=2)
    stored_run(store, "not started", epochs_done=0, status="cancelled")

    def page(root):
        from fmnist_core.store.run_store import RunStore
        from ui.sweeps import trial_columns, trial_rows
        from ui.tables import show_table

        show_table(trial_rows(RunStore(root).list(), ["lr", "batch_size"]), trial_columns(["lr", "batch_size"]), key="trials")

    at = AppTest.from_function(page, args=(tmp_path / "runs",)).run()
    assert not at.exception
    shown = as_displayed(at.dataframe[0])
    rows = {status: i for i, status in enumerate(shown["Status"])}
    assert shown["Best test accuracy (%)"][rows["finished"]] == "81.00" and shown["Time (s)"][rows["finished"]] == "6"
    assert shown["Best test accuracy (%)"][rows["cancelled"]] == "–" and shown["Time (s)"][rows["cancelled"]] == "–"
    assert shown["Learning rate"] == ["0.01", "0.01"] and shown["Batch size"] == ["32", "32"]
