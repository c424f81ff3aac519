"""The runs table of the Train and Compare pages: one column declaration, one frame, one CSV.

Rows come from RunRecord.summary() (numbers as numbers, None when unknown). Every column
has a human label with its unit; a page chooses which columns show (the rest stay in the
frame, in the CSV and behind the table's show/hide-columns menu) so a table fits its width
at 1400 px instead of being cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from fmnist_core.csv_cells import inert_cell
from fmnist_core.run_store import RunRecord


@dataclass(frozen=True)
class RunColumn:
    label: str
    kind: str = "text"  # text | int | float | bool
    format: str | None = None  # NumberColumn's format
    width: int = 90  # pixels; at least the label's own width, so no header is cut off
    help: str | None = None


RUN_COLUMNS: dict[str, RunColumn] = {
    "name": RunColumn("Name", width=150),
    "source": RunColumn("Source", width=110, help="Trained here, shipped with the Studio, or a reproduced Table 1 row (figures only)."),
    "status": RunColumn("Status", width=80),
    "model": RunColumn("Model", width=85),
    "optimizer": RunColumn("Optimizer", width=80),
    "lr": RunColumn("Learning rate", "float", "%g", 100),
    "batch_size": RunColumn("Batch size", "int", "%d", 80),
    "init": RunColumn("Weight init", width=90),
    "patch": RunColumn("Patch (px)", "int", "%d", 80, "Tile size when training on tiles; 0 = whole images."),
    "augment": RunColumn("Augmented", "bool", width=85),
    "epochs_done": RunColumn("Epochs done", "int", "%d", 95),
    "epochs_planned": RunColumn("Epochs planned", "int", "%d", 110),
    "params": RunColumn("Parameters", "int", "localized", 95),
    "train_accuracy": RunColumn("Train accuracy (%)", "float", "%.2f", 140, "Last epoch."),
    "test_accuracy": RunColumn("Test accuracy (%)", "float", "%.2f", 135, "Last epoch."),
    "best_test_accuracy": RunColumn("Best test accuracy (%)", "float", "%.2f", 160, "The best epoch's."),
    "train_loss_sum": RunColumn("Loss (report's sum)", "float", "%.1f", 145,
                                "Sum of the per-batch training losses of the last epoch, as the report's Table 1."),
    "test_loss": RunColumn("Test loss", "float", "%.4f", 85),
    "seconds": RunColumn("Time (s)", "float", "%.0f", 70, "Training time, all epochs."),
    "images_per_s": RunColumn("Images/s", "float", "%.0f", 80, "Training throughput, mean over epochs."),
    "created": RunColumn("Created (UTC)", width=180),
    "id": RunColumn("Run id", width=220),
}
PANDAS_TYPES = {"int": "Int64", "float": "Float64", "bool": "boolean", "text": "string"}  # nullable: None stays missing


def is_cancelled_unstarted(frame: pd.DataFrame) -> pd.Series:
    """Runs cancelled in the queue: nothing to look at, hidden unless asked for."""
    return (frame["status"] == "cancelled") & (frame["epochs_done"] == 0)


def runs_frame(records: list[RunRecord], show_cancelled: bool = False) -> pd.DataFrame:
    """One typed row per run, code-named columns in RUN_COLUMNS' order."""
    return rows_frame([r.summary() for r in records], show_cancelled)


def rows_frame(rows: list[dict], show_cancelled: bool = False) -> pd.DataFrame:
    """One typed row per summary row (RunRecord.summary's keys; missing keys are blanks)."""
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    frame = frame.astype({name: PANDAS_TYPES[column.kind] for name, column in RUN_COLUMNS.items()})
    if not show_cancelled and len(frame):
        frame = frame[~is_cancelled_unstarted(frame)]
    return frame.reset_index(drop=True)


def csv_text(frame: pd.DataFrame) -> str:
    """The runs table as CSV under the labels the table shows; missing values are empty fields."""
    return frame_csv(frame.rename(columns={name: RUN_COLUMNS[name].label for name in frame.columns if name in RUN_COLUMNS}))


def frame_csv(frame: pd.DataFrame) -> str:
    """Any frame as a CSV to download: no cell can be a spreadsheet formula (csv_cells). Lines
    end in CRLF, as RFC 4180 has it: a cell holding a bare CR is then quoted too (with "\n"
    as the line end it is left bare, and a spreadsheet splits the row there)."""
    return frame.map(inert_cell).to_csv(index=False, lineterminator="\r\n")


def column_config(visible: list[str]) -> dict:
    """Streamlit column settings: human labels and units, every column not in `visible` hidden."""
    config = {}
    for name, column in RUN_COLUMNS.items():
        common = dict(label=column.label, width=column.width, help=column.help)
        if column.kind in ("int", "float"):
            config[name] = st.column_config.NumberColumn(format=column.format, **common)
        elif column.kind == "bool":
            config[name] = st.column_config.CheckboxColumn(**common)
        else:
            config[name] = st.column_config.TextColumn(**common)
        # a ColumnConfig key the column factories do not take as an argument; the table's
        # toolbar can show the column again
        config[name]["hidden"] = name not in visible
    return config


def runs_table(frame: pd.DataFrame, visible: list[str], key: str) -> None:
    """The runs as an interactive table: `visible` columns in that order, blanks for missing values."""
    st.dataframe(frame, hide_index=True, width="stretch", key=key, placeholder="",
                 column_order=[*visible, *(c for c in frame.columns if c not in visible)],
                 column_config=column_config(visible))
