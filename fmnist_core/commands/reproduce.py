"""Reproduce the report's Table 1 (and its optimizer and init experiments) with the
report's own recipe, store each as a normal run, and write the tables to results/."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_bytes
from fmnist_core.base.statuses import RunStatus
from fmnist_core.base.table1 import CSV_TO_RESULT, TABLE1, TABLE1_COLUMNS, results_from_runs, table1_rows
from fmnist_core.base.words import counted
from fmnist_core.commands.console import ConsoleProgress
from fmnist_core.images.data import load_fashion_mnist
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.recipes import RECIPES, REPORT_BASE
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import train_run

# The report's two other experiments, on its best model (CNN C), everything else as Table 1.
STUDY_MODEL = dict(REPORT_BASE, model="cnn_c")
STUDIES: dict[str, list[tuple[str, dict]]] = {
    "optimizers": [
        ("SGD (lr 0.01, momentum 0.9)", dict(STUDY_MODEL, optimizer="sgd", lr=0.01)),
        ("Adam (lr 0.001)", dict(STUDY_MODEL, optimizer="adam", lr=0.001)),
        ("RMSprop (lr 0.001)", dict(STUDY_MODEL, optimizer="rmsprop", lr=0.001, momentum=0.0)),
    ],
    "init": [(f"init {scheme}", dict(STUDY_MODEL, lr=0.01, init=scheme))
             for scheme in ("default", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "normal", "custom")],
}


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def study_rows(study: str, results: dict[str, dict]) -> list[dict]:
    rows = []
    for label, _ in STUDIES[study]:
        ours = results.get(study_run_name(study, label), {})
        rows.append({"setting": label, "train_accuracy": ours.get("train_accuracy"), "test_accuracy": ours.get("test_accuracy"),
                     "loss": ours.get("train_loss_sum"), "seconds": ours.get("seconds"), "epochs": ours.get("epochs_done"),
                     "status": ours.get("status", ""), "run": ours.get("run", "")})
    return rows


def study_run_name(study: str, label: str) -> str:
    return f"{study}: {label}"


def to_markdown(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for _, key in columns:
            value = row.get(key)
            if isinstance(value, float):
                cells.append(_fmt(value, 0 if key == "seconds" else 2))
            else:
                cells.append("–" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


STUDY_COLUMNS = [("Setting", "setting"), ("Train acc", "train_accuracy"), ("Test acc", "test_accuracy"),
                 ("Loss", "loss"), ("Epochs", "epochs"), ("Seconds", "seconds"), ("Status", "status")]


def kept_from_previous(rows: list[dict], previous_csv: Path, key: tuple[str, ...]) -> list[dict]:
    """Rows this run store has no run for keep our figures from the table as it was (the
    reproduction a fresh clone ships, or one made on another machine): a table is rebuilt
    from runs, never blanked. Rows are matched on `key`; a missing or damaged file keeps nothing."""
    try:
        with open(previous_csv, newline="") as f:
            previous = {tuple(line.get(k) for k in key): line for line in csv.DictReader(f)}
    except (OSError, csv.Error, UnicodeDecodeError):
        return rows
    kept = []
    for row in rows:
        old = previous.get(tuple(str(row[k]) for k in key))
        if row["status"] or not old or not old.get("status"):
            kept.append(row)
            continue
        ours = {column: _cell(column, old.get(column) or "") for column in CSV_TO_RESULT}
        kept.append({**row, **ours})
    return kept


def _cell(column: str, text: str):
    """A CSV cell of ours back as the row holds it: text, a whole number of epochs, a float or None."""
    if column in ("status", "run") or not text:
        return text if column in ("status", "run") else None
    try:
        return int(text) if column == "epochs" else float(text)
    except ValueError:
        return None


def planned_runs(study: str, epochs: int, only: list[str] | None) -> list[tuple[str, TrainConfig]]:
    """(row key, config) for each run the command will train, validated up front."""
    if study == "table1":
        keys = [row.recipe for row in TABLE1]
        plan = [(key, TrainConfig(**{**RECIPES[key], "epochs": epochs, "name": key})) for key in keys]
    else:
        plan = [(label, TrainConfig(**{**values, "epochs": epochs, "name": study_run_name(study, label)})) for label, values in STUDIES[study]]
    if only:
        unknown = [o for o in only if o not in {k for k, _ in plan}]
        if unknown:
            raise UserError(f"unknown row(s) {', '.join(unknown)}; choose from: {', '.join(k for k, _ in plan)}")
        plan = [(k, c) for k, c in plan if k in only]
    for _, config in plan:
        config.validate()
    return plan


def run_reproduce(epochs: int, only: list[str] | None, study: str, out_dir: Path, store: RunStore | None = None,
                  callbacks=(), tables_only: bool = False, parallel: int | None = None) -> int:
    """Train the planned rows (unless tables_only), then write the table from the run
    store: each row shows the newest run of its recipe, so rows can be rerun one by one.
    `parallel`: run the rows as one Ray Tune sweep (a grid over the rows' configs), that
    many at a time with one thread each, instead of one after the other."""
    plan = [] if tables_only else planned_runs(study, epochs, only)
    store = store or RunStore()
    if plan and parallel:
        _run_as_sweep(plan, study, parallel, store)
        plan = []
    data = load_fashion_mnist() if plan else None
    for key, config in plan:
        print(f"\n== {key}: {config.model}, {config.optimizer} lr {config.lr}, batch {config.batch_size}, {counted(config.epochs, 'epoch')}")
        run_id = store.create(config, name=config.name).name
        result = train_run(store, run_id, config, callbacks=[ConsoleProgress(), *callbacks], data=data)
        if result["status"] != RunStatus.FINISHED:
            print(f"{result['status']}: {result['message']}")
    results = results_from_runs(store.list())
    row_key: tuple[str, ...]  # the columns that name a row
    if study == "table1":
        rows, columns, stem, row_key = table1_rows(results), TABLE1_COLUMNS, "table1", ("model", "configuration")
    else:
        rows, columns, stem, row_key = study_rows(study, results), STUDY_COLUMNS, f"study_{study}", ("setting",)
    rows = kept_from_previous(rows, out_dir / f"{stem}.csv", row_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, columns)
    atomic_write_bytes(out_dir / f"{stem}.md", markdown.encode())
    atomic_write_bytes(out_dir / f"{stem}.csv", to_csv(rows).encode())
    print("\n" + markdown)
    print(f"wrote {out_dir / (stem + '.md')} and {out_dir / (stem + '.csv')}")
    return 0


def _run_as_sweep(plan: list[tuple[str, TrainConfig]], study: str, parallel: int, store: RunStore) -> None:
    from fmnist_core.sweeps.sweep import SweepSpec, run_sweep

    spec = SweepSpec(base=plan[0][1], rows=[config for _, config in plan], max_concurrent=parallel, cpus_per_trial=1,
                     name=f"reproduce {study}")
    summary = run_sweep(spec, store=store)
    print(f"\n{summary['sweep']}: {summary['trials']} row(s) in {summary['seconds']:.0f} s, {parallel} at a time")
