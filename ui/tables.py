"""The Studio's tables: the runs table of the Train and Compare pages (one column
declaration, one frame, one CSV), Compare's Table 1, and how every kind of column shows.

Rows come from RunRecord.summary() (numbers as numbers, None when unknown). Every column
has a human label with its unit; a page chooses which columns show (the rest stay in the
frame, in the CSV and behind the table's show/hide-columns menu) so a table fits its width
at 1400 px (940 px of content beside the page list) instead of scrolling sideways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from fmnist_core.base.csv_cells import inert_cell
from fmnist_core.base.statuses import RunStatus
from fmnist_core.store.run_store import RunRecord

# How each kind of column shows, in one place (issue 23): its pandas type (nullable, so a
# missing value stays missing and shows as PLACEHOLDER, never "None") and its NumberColumn
# format, rounded to what the kind means. A column declares its kind, never its own format.
KINDS: dict[str, tuple[str, str | None]] = {
    "text": ("string", None),
    "bool": ("boolean", None),
    "int": ("Int64", "%d"),  # epochs, batch size, pixels
    "count": ("Int64", "localized"),  # parameters: 1,234,567
    "percent": ("Float64", "%.2f"),  # accuracies (%): two decimals
    "seconds": ("Float64", "%.0f"),  # durations: whole seconds
    "exact": ("Float64", "%g"),  # a setting as typed: learning rate 1e-05, 0.15; batch size 64
    "loss_sum": ("Float64", "%.2f"),  # the report's summed training loss, as it publishes it
    "loss": ("Float64", "%.4f"),  # a mean loss per image
    "per_second": ("Float64", "%.0f"),  # throughput: whole images per second
    "link": ("string", None),  # a page's address, shown as LINK_TEXT
}
LINK_TEXT = "Open"
PLACEHOLDER = "–"  # a missing value, in every table


@dataclass(frozen=True)
class Column:
    label: str
    kind: str = "text"  # a key of KINDS
    width: int = 90  # pixels; at least the label's own width, so no header is cut off
    help: str | None = None


RUN_COLUMNS: dict[str, Column] = {
    "name": Column("Name", width=150),
    "source": Column("Source", width=110, help="Trained here, shipped with the Studio, or a reproduced Table 1 row (figures only)."),
    "status": Column("Status", width=80),
    "model": Column("Model", width=85),
    "optimizer": Column("Optimizer", width=80),
    "lr": Column("Learning rate", "exact", 100),
    "batch_size": Column("Batch size", "int", 80),
    "init": Column("Weight init", width=90),
    "patch": Column("Patch (px)", "int", 80, "Tile size when training on tiles; 0 = whole images."),
    "augment": Column("Augmented", "bool", width=85),
    "epochs_done": Column("Epochs done", "int", 95),
    "epochs_planned": Column("Epochs planned", "int", 110),
    "params": Column("Parameters", "count", 95),
    "train_accuracy": Column("Train accuracy (%)", "percent", 140, "Last epoch."),
    "test_accuracy": Column("Test accuracy (%)", "percent", 135, "Last epoch."),
    "best_test_accuracy": Column("Best test accuracy (%)", "percent", 160, "The best epoch's."),
    "train_loss_sum": Column("Loss (report's sum)", "loss_sum", 145,
                             "Sum of the per-batch training losses of the last epoch, as the report's Table 1."),
    "test_loss": Column("Test loss", "loss", 85),
    "seconds": Column("Time (s)", "seconds", 70, "Training time, all epochs."),
    "images_per_s": Column("Images/s", "per_second", 80, "Training throughput, mean over epochs."),
    "threads": Column("Threads", "int", 65, "CPU threads the run trained with (its time depends on them)."),
    "precision": Column("Precision", width=75, help="fp32, or bf16 mixed precision where the hardware computes it natively."),
    "created": Column("Created (UTC)", width=180),
    "id": Column("Run id", width=220),
}
# The report's Table 1 beside ours (fmnist_core.base.table1.table1_rows' keys; "patched" is its
# configuration). Short headers, the full meaning on hover; Model wide enough for the
# longest row name, so no name is cut.
TABLE1_VIEW: dict[str, Column] = {
    "model": Column("Model", width=235),
    "patched": Column("Patched", "bool", 70, "Trained on tiles (the report's \"Patching\" configuration)."),
    "report_train_accuracy": Column("Train (report)", "percent", 100, "Train accuracy (%), as published in the report."),
    "train_accuracy": Column("Train (ours)", "percent", 88, "Train accuracy (%) of our run, last epoch."),
    "report_test_accuracy": Column("Test (report)", "percent", 94, "Test accuracy (%), as published in the report."),
    "test_accuracy": Column("Test (ours)", "percent", 82, "Test accuracy (%) of our run, last epoch."),
    "report_loss": Column("Loss (report)", "loss_sum", 94, "Summed training loss of the last epoch, as published."),
    "loss": Column("Loss (ours)", "loss_sum", 82, "Summed training loss of our run's last epoch, as the report sums it."),
    "status": Column("Status", width=75),
    "epochs": Column("Epochs", "int", 60),
    "seconds": Column("Time (s)", "seconds", 70, "Our run's training time, all epochs."),
}
TABLE1_SHOWN = ["model", "patched", "report_train_accuracy", "train_accuracy", "report_test_accuracy", "test_accuracy",
                "report_loss", "loss", "status"]  # 920 px; epochs and time: the column menu and the CSV

# The leaderboard (fmnist_core.store.leaderboard's rows, and the link a page adds). "owner" and
# "yours" show in shared mode only; the run id (undeclared) makes the link.
LEADERBOARD_COLUMNS: dict[str, Column] = {
    "rank": Column("Rank", "int", 50),
    "owner": Column("Who", width=140, help="Whose best run this is: \"you\" for yours."),
    "yours": Column("Yours", "bool", 55),
    "name": Column("Name", width=150),
    "test_accuracy": Column("Test accuracy (%)", "percent", 135, "Last epoch: the saved model's."),
    "model": Column("Model", width=85),
    "recipe": Column("Recipe", width=90, help="The recipe whose settings the run used (epochs and seed may differ); "
                     "custom: no recipe's."),
    "params": Column("Parameters", "count", 95),
    "seconds": Column("Time (s)", "seconds", 70, "Training time, all epochs."),
    "link": Column("Curves", "link", 65, "This run's curves on Compare."),
}

PANDAS_TYPES = {kind: dtype for kind, (dtype, _) in KINDS.items()}


def is_cancelled_unstarted(frame: pd.DataFrame) -> pd.Series:
    """Runs cancelled in the queue: nothing to look at, hidden unless asked for."""
    return (frame["status"] == RunStatus.CANCELLED) & (frame["epochs_done"] == 0)


def runs_frame(records: list[RunRecord], show_cancelled: bool = False) -> pd.DataFrame:
    """One typed row per run, code-named columns in RUN_COLUMNS' order."""
    return rows_frame([r.summary() for r in records], show_cancelled)


def rows_frame(rows: list[dict], show_cancelled: bool = False) -> pd.DataFrame:
    """One typed row per summary row (RunRecord.summary's keys; missing keys are blanks)."""
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    frame = typed(frame, RUN_COLUMNS)
    if not show_cancelled and len(frame):
        frame = frame[~is_cancelled_unstarted(frame)]
    return frame.reset_index(drop=True)


def table1_frame(rows: list[dict]) -> pd.DataFrame:
    """table1_rows' rows as TABLE1_VIEW's typed columns (and the run id, for the CSV)."""
    frame = pd.DataFrame(rows)
    frame["patched"] = frame["configuration"] == "Patching"
    return typed(frame[[*TABLE1_VIEW, "run"]], TABLE1_VIEW)


def table1_csv(frame: pd.DataFrame) -> str:
    """Table 1 as CSV under the labels the table shows; missing values are empty fields."""
    return frame_csv(frame.rename(columns={name: TABLE1_VIEW[name].label for name in frame.columns if name in TABLE1_VIEW}))


def csv_text(frame: pd.DataFrame) -> str:
    """The runs table as CSV under the labels the table shows; missing values are empty fields."""
    return frame_csv(frame.rename(columns={name: RUN_COLUMNS[name].label for name in frame.columns if name in RUN_COLUMNS}))


def frame_csv(frame: pd.DataFrame) -> str:
    """Any frame as a CSV to download: no cell can be a spreadsheet formula (csv_cells). Lines
    end in CRLF, as RFC 4180 has it: a cell holding a bare CR is then quoted too (with "\n"
    as the line end it is left bare, and a spreadsheet splits the row there)."""
    return frame.map(inert_cell).to_csv(index=False, lineterminator="\r\n")


EXACT_DIGITS = 12  # an "exact" setting's significant digits: 0.1 * 0.1 is 0.010000000000000002 in binary


def typed(frame: pd.DataFrame, columns: dict[str, Column]) -> pd.DataFrame:
    """`frame` with each declared column in its kind's nullable type (None stays missing), and
    an "exact" setting without binary float noise: the grid's %g shows a number as it is, so a
    learning rate of 0.1 * 0.1 filled its cell with "…00000000000002" (the fine-tuned model's)."""
    frame = frame.astype({name: PANDAS_TYPES[column.kind] for name, column in columns.items() if name in frame.columns})
    for name in [n for n, column in columns.items() if column.kind == "exact" and n in frame.columns]:
        frame[name] = frame[name].map(lambda v: v if pd.isna(v) else float(f"{v:.{EXACT_DIGITS}g}")).astype(PANDAS_TYPES["exact"])
    return frame


def column_config(columns: dict[str, Column], visible: list[str] | None = None) -> dict:
    """Streamlit column settings: human labels and units, each kind's format; with `visible`,
    every other column is hidden (the table's toolbar can show it again)."""
    config = {}
    for name, column in columns.items():
        common: dict[str, Any] = dict(label=column.label, width=column.width, help=column.help)
        if column.kind == "bool":
            config[name] = st.column_config.CheckboxColumn(**common)
        elif column.kind == "link":
            config[name] = st.column_config.LinkColumn(display_text=LINK_TEXT, **common)
        elif column.kind == "text":
            config[name] = st.column_config.TextColumn(**common)
        else:
            config[name] = st.column_config.NumberColumn(format=KINDS[column.kind][1], **common)
        if visible is not None:
            # a ColumnConfig key the column factories do not take as an argument
            config[name]["hidden"] = name not in visible
    return config


def show_table(frame: pd.DataFrame, columns: dict[str, Column], key: str, visible: list[str] | None = None) -> None:
    """A read-only table: the `visible` columns (default: all declared), in that order, each
    kind in its format, PLACEHOLDER for missing values; the other declared columns behind the
    column menu, undeclared ones (ids for the CSV) not at all."""
    visible = list(columns) if visible is None else visible
    st.dataframe(typed(frame, columns), hide_index=True, width="stretch", key=key, placeholder=PLACEHOLDER,
                 column_order=[*visible, *(c for c in columns if c in frame.columns and c not in visible)],
                 column_config=column_config(columns, visible))


def runs_table(frame: pd.DataFrame, visible: list[str], key: str, extra: dict[str, Column] | None = None) -> None:
    """The runs as an interactive table: `visible` columns in that order, the rest behind the
    column menu; `extra` declares columns a page adds to RunRecord.summary's."""
    show_table(frame, {**RUN_COLUMNS, **(extra or {})}, key, visible)
