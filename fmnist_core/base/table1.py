"""The report's Table 1 as published, and our reproduction of it beside it.

Below the training code: the Compare page and the catalog read these without importing
the training loop; `reproduce` writes results/table1.csv from them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fmnist_core.base.statuses import RunStatus


@dataclass(frozen=True)
class ReportRow:
    """One row of the report's Table 1, as published."""

    label: str
    recipe: str
    train_accuracy: float | None
    test_accuracy: float | None
    loss: float | None
    configuration: str


TABLE1 = [
    ReportRow("MLP4", "report_mlp4", 91.9, 88.62, 469.58, "No Patching"),
    ReportRow("MLP4 (lr 0.01)", "report_mlp4_low_lr", None, None, None, "No Patching"),
    ReportRow("MLP4", "report_mlp4_patch", 88.67, 86.18, 636.18, "Patching"),
    ReportRow("MLP Custom", "report_mlp_custom", 91.435, 86.61, 503.31, "No Patching"),
    ReportRow("CNN A", "report_cnn_a", 89.30, 87.75, 567.61, "No Patching"),
    ReportRow("CNN B (as published: double softmax)", "report_cnn_b", 92.26, 89.49, 2873.43, "No Patching"),
    ReportRow("CNN B (corrected: logits)", "report_cnn_b_fixed", None, None, None, "No Patching"),
    ReportRow("CNN C", "report_cnn_c", 93.38, 90.34, 400.0, "No Patching"),
]


def table1_rows(results: dict[str, dict]) -> list[dict]:
    """The report's rows beside ours; `results` maps a recipe name to a run result."""
    rows = []
    for row in TABLE1:
        ours = results.get(row.recipe, {})
        rows.append({
            "model": row.label, "configuration": row.configuration,
            "report_train_accuracy": row.train_accuracy, "train_accuracy": ours.get("train_accuracy"),
            "report_test_accuracy": row.test_accuracy, "test_accuracy": ours.get("test_accuracy"),
            "report_loss": row.loss, "loss": ours.get("train_loss_sum"),
            "seconds": ours.get("seconds"), "epochs": ours.get("epochs_done"), "status": ours.get("status", ""),
            "run": ours.get("run", ""),
        })
    return rows


TABLE1_COLUMNS = [
    ("Model", "model"), ("Configuration", "configuration"),
    ("Train acc (report)", "report_train_accuracy"), ("Train acc (ours)", "train_accuracy"),
    ("Test acc (report)", "report_test_accuracy"), ("Test acc (ours)", "test_accuracy"),
    ("Loss (report)", "report_loss"), ("Loss (ours)", "loss"), ("Epochs", "epochs"), ("Seconds (ours)", "seconds"),
    ("Status", "status"),
]


def results_from_runs(records) -> dict[str, dict]:
    """For each run name (a recipe, or a study's row), the newest run that ended with
    figures or diverged; runs stopped or cut short by the user are left out."""
    found: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: r.created):
        name = record.config.get("name", "")
        if name and record.result and record.status in (RunStatus.FINISHED, RunStatus.DIVERGED):
            found[name] = {**record.result, "run": record.id}
    return found


# results/table1.csv's columns -> the keys of a run result (as results_from_runs gives).
CSV_TO_RESULT = {"train_accuracy": "train_accuracy", "test_accuracy": "test_accuracy", "loss": "train_loss_sum",
                 "seconds": "seconds", "epochs": "epochs_done", "status": "status", "run": "run"}


def read_table1_csv(path: Path) -> dict[str, dict]:
    """Our side of Table 1 as `reproduce` last wrote it (possibly on another machine):
    {recipe: result}, for the rows that have a status. A missing or damaged file is {}."""
    by_row: dict[tuple[str | None, str | None], str] = {(row.label, row.configuration): row.recipe for row in TABLE1}
    found: dict[str, dict] = {}
    try:
        with open(path, newline="") as f:
            lines = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    for line in lines:
        recipe = by_row.get((line.get("model"), line.get("configuration")))
        if recipe is None or not line.get("status"):
            continue
        result = {}
        for column, key in CSV_TO_RESULT.items():
            text = (line.get(column) or "").strip()
            result[key] = text if key in ("status", "run") else _number(text)
        if result["epochs_done"] is not None:
            result["epochs_done"] = int(result["epochs_done"])
        found[recipe] = result
    return found


def _number(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def table1_results(records, results_csv: Path) -> dict[str, dict]:
    """Our side of Table 1: the runs of this store where there are any, else the figures
    of results/table1.csv (so a fresh clone shows the reproduction it ships with)."""
    return {**read_table1_csv(results_csv), **results_from_runs(records)}
