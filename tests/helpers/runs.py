"""Runs and sweeps written straight to a run store, as training leaves them (no training needed),
and the small configs tests train with."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fmnist_core.base.files import atomic_write_json
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore, result_from

# Every file of a finished run's folder.
RUN_FILES = ("run.json", "config.json", "result.json", "history.jsonl", "owner.json", "model.safetensors")


class StepClock:
    """A clock for `RunStore(clock=...)` that moves on one second per reading, from an hour
    ago: runs made with it sort in the order made (ids start with the second), all older than
    a run the real clock makes now, and no test sleeps for it."""

    def __init__(self, start: datetime | None = None):
        self.now = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def cfg(**kw):
    return TrainConfig(**{**dict(model="cnn_a", optimizer="adam", lr=0.01, batch_size=32, epochs=2, threads=1), **kw})


def stored_run(store: RunStore, name: str = "stored", epochs_done: int = 1, epochs: int = 2, status: str = "finished") -> str:
    """A run folder as training leaves it, written directly (no training needed)."""
    run_id = store.create(cfg(epochs=epochs), name).name
    history = [{"epoch": e, "train_accuracy": 80.0 + e, "test_accuracy": 79.0 + e, "train_loss_sum": 10.0 / e,
                "test_loss": 0.5 / e, "elapsed_s": 3.0 * e, "images_per_s": 1000.0} for e in range(1, epochs_done + 1)]
    (store.root / run_id / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    store.write_result(run_id, {"status": status, "message": "", "params": 2174.0 if epochs_done else None})
    return run_id


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "cnn_a", "epochs": 1, "batch_size": 256, "threads": 1, **kw})


def add_run(store: RunStore, name: str, owner: str, accuracy: float, created: str, status: str = "finished",
            sweep: str | None = None, config: TrainConfig | None = None) -> str:
    """A run that ended with `status` after one epoch at `accuracy`% (no weights: none is needed)."""
    config = config or TrainConfig(model="cnn_a", epochs=1)
    run_id = store.create(config, name=name, owner=owner, sweep=sweep).name
    epoch = {"epoch": 1, "train_loss": 0.4, "train_loss_sum": 750.0, "train_accuracy": accuracy - 1, "test_loss": 0.3, "test_accuracy": accuracy,
             "elapsed_s": 12.0, "images_per_s": 5000.0}
    (store.root / run_id / "history.jsonl").write_text(json.dumps(epoch) + "\n")
    store.write_result(run_id, result_from(status, "", [epoch], 12.0, 12345))
    info = json.loads((store.root / run_id / "run.json").read_text())
    atomic_write_json(store.root / run_id / "run.json", {**info, "created": created})
    return run_id


def fake_finished_sweep(runs: Path) -> tuple[str, list[str]]:
    """A finished sweep as the driver leaves it on disk: a record and three tagged runs."""
    from fmnist_core.base.files import atomic_write_json
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.store.run_store import result_from

    store, sweep_id = RunStore(runs), "sweep-20260101-000000-abcd"
    ids = []
    for k, (lr, accuracy) in enumerate([(0.01, 71.0), (0.05, 84.5), (0.1, 80.25)], start=1):
        run_id = f"{sweep_id}-t{k:02d}"
        store.create(TrainConfig(model="cnn_a", lr=lr, epochs=1, optimizer="adam", name=f"s: lr={lr}"), run_id=run_id, sweep=sweep_id)
        history = [{"epoch": 1, "train_loss": 1.0, "train_loss_sum": 3.0, "train_accuracy": accuracy - 5, "test_loss": 0.9,
                    "test_accuracy": accuracy, "seconds": 2.0, "images_per_s": 300.0, "lr": lr, "elapsed_s": 2.0}]
        (runs / run_id / "history.jsonl").write_text(json.dumps(history[0]) + "\n")
        store.write_result(run_id, result_from("finished", "", history, 2.0, 2174))
        ids.append(run_id)
    atomic_write_json(runs / ".sweeps" / f"{sweep_id}.json", {
        "id": sweep_id, "name": "page sweep", "status": "finished", "created": "2026-01-01T00:00:00", "pid": 1, "host": "elsewhere",
        "space": [{"name": "lr", "kind": "grid", "values": [0.01, 0.05, 0.1], "low": None, "high": None}],
        "base": TrainConfig(model="cnn_a", optimizer="adam", epochs=1).to_dict(),
        "options": {"trials": 3, "search": "random", "early_stop": "none", "address": "local"}, "trial_runs": ids, "seconds": 9.0})
    return sweep_id, ids
