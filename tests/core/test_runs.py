import json
import os
import re
import threading
import time
from datetime import UTC, datetime

import pytest

from fmnist_core.base.errors import UserError
from fmnist_core.formats.checkpoint import read_metadata
from fmnist_core.modeling.config import MAX_NAME_LENGTH, ConfigError, TrainConfig
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import MAX_BATCH_POINTS, TRAINER_NICENESS, LiveRun, RunManager, RunWriter
from tests.helpers.runs import StepClock, cfg, stored_run


def wait_for_first_epoch(manager: RunManager, run_id: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not manager.live(run_id).history:
        assert time.time() < deadline, f"{run_id} finished no epoch in {timeout:.0f} s"
        time.sleep(0.05)


@pytest.fixture
def manager(tmp_path, tiny_data):
    return RunManager(RunStore(tmp_path / "runs"), data_loader=lambda: tiny_data)


def test_runs_queue_and_finish_with_files_on_disk(manager):
    first = manager.submit(cfg(epochs=3), name="first")
    second = manager.submit(cfg())
    assert manager.live(second).status == "queued"  # one run at a time
    assert manager.wait_idle(120)
    records = {r.id: r for r in manager.list_runs()}
    assert records[first].status == records[second].status == "finished"
    assert records[first].name == "first"
    folder = records[first].path
    assert len((folder / "history.jsonl").read_text().splitlines()) == 3
    assert json.loads((folder / "result.json").read_text())["epochs_done"] == 3
    assert records[first].weights == folder / "model.safetensors"
    assert read_metadata(records[first].weights)["metrics"]["epoch"] == 3  # the weights of the last epoch
    assert records[first].summary()["best_test_accuracy"] > 50
    snapshot = manager.live(first)
    assert snapshot.history and snapshot.batch_losses


def test_a_run_records_what_it_trained_on(tmp_path, tiny_data):
    """A run's time means little without its threads and precision (issue 22): the result
    keeps both, the runs table reads them, and a damaged value is refused."""
    from fmnist_core.formats.run_files import FileProblem
    from fmnist_core.training.run_manager import train_run

    store = RunStore(tmp_path / "runs")
    run_id = store.create(cfg(epochs=1, threads=1, precision="auto"), run_id="r").name
    result = train_run(store, run_id, cfg(epochs=1, threads=1, precision="auto"), data=tiny_data)
    assert (result["device"], result["threads"]) == ("cpu", 1)
    assert result["precision"] in ("fp32", "bf16")  # auto, resolved for this CPU
    stored = json.loads((store.root / run_id / "result.json").read_text())
    assert {k: stored[k] for k in ("device", "threads", "precision")} == {k: result[k] for k in ("device", "threads", "precision")}
    summary = store.read(run_id).summary()
    assert (summary["threads"], summary["precision"]) == (1, result["precision"])

    (store.root / run_id / "result.json").write_text(json.dumps({**stored, "precision": "auto"}))
    record = store.read(run_id)
    assert record.problems and "precision" in " ".join(record.problems)
    with pytest.raises(FileProblem):
        from fmnist_core.formats.run_files import RESULT, check_shape
        check_shape("result.json", {**stored, "threads": 0}, RESULT)


def test_stop_and_cancel(manager):
    running = manager.submit(cfg(epochs=200))
    queued = manager.submit(cfg())
    wait_for_first_epoch(manager, running)
    manager.stop(queued)
    manager.stop(running)
    assert manager.wait_idle(30)
    records = {r.id: r for r in manager.list_runs()}
    assert records[running].status == "stopped" and 1 <= len(records[running].history) < 200
    assert records[running].weights == records[running].path / "model.safetensors"
    assert read_metadata(records[running].weights)["metrics"]["epoch"] == len(records[running].history)
    assert records[queued].status == "cancelled"


def test_a_run_cut_off_by_a_restart_reads_as_interrupted(manager, tmp_path):
    run_id = manager.submit(cfg())
    manager.wait_idle(60)
    (manager.store.root / run_id / "result.json").unlink()  # as if the server died mid-run
    fresh = RunStore(tmp_path / "runs")  # a new process sees the folder
    record = fresh.read(run_id)
    assert record.status == "interrupted" and len(record.history) == 2


def test_failures_become_failed_runs(tmp_path):
    def broken_loader():
        raise RuntimeError("disk on fire")

    manager = RunManager(RunStore(tmp_path / "runs"), data_loader=broken_loader)
    run_id = manager.submit(cfg())
    manager.wait_idle(30)
    record = manager.store.read(run_id)
    assert record.status == "failed" and "disk on fire" in record.result["message"]


def test_invalid_config_creates_nothing(manager):
    with pytest.raises(ConfigError):
        manager.submit(cfg(lr=-1.0))
    assert manager.store.ids() == []


def test_damaged_files_are_reported_not_fatal(manager):
    run_id = manager.submit(cfg())
    manager.wait_idle(60)
    folder = manager.store.root / run_id
    with open(folder / "history.jsonl", "a") as f:
        f.write('{"epoch": 3, "test_acc')  # a line cut off by a crash
    (folder / "run.json").write_text("{not json")
    record = manager.store.read(run_id)
    assert len(record.history) == 2
    assert any("history.jsonl" in p for p in record.problems) and any("run.json" in p for p in record.problems)


def test_rename_and_delete(manager):
    run_id = manager.submit(cfg(epochs=1))
    manager.wait_idle(60)
    manager.store.rename(run_id, "  nice name ")
    assert manager.store.read(run_id).name == "nice name"
    with pytest.raises(ValueError):
        manager.store.rename(run_id, "   ")
    manager.delete(run_id)
    assert manager.store.ids() == []


def test_a_run_trained_by_another_live_process_reads_as_running(manager, tmp_path):
    import subprocess
    import sys

    run_id = manager.submit(cfg())
    manager.wait_idle(60)
    folder = manager.store.root / run_id
    (folder / "result.json").unlink()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (folder / "owner.json").write_text(json.dumps({"pid": other.pid}))
        assert RunStore(tmp_path / "runs").read(run_id).status == "running"
    finally:
        other.kill()
        other.wait()
    assert RunStore(tmp_path / "runs").read(run_id).status == "interrupted"


def test_view_is_live_here_and_read_from_disk_elsewhere(manager, tmp_path, tiny_data):
    run_id = manager.submit(cfg(epochs=2))
    assert manager.wait_idle(120)
    live = manager.view(run_id)
    assert live.live and live.status == "finished" and live.batch_losses
    # A fresh manager on the same store (another server process, or after a restart).
    stored = RunManager(RunStore(tmp_path / "runs"), data_loader=lambda: tiny_data).view(run_id)
    assert not stored.live and stored.status == "finished"
    # the per-batch losses come back from the run folder: the same points, the same x-axis
    assert stored.batch_losses == live.batch_losses and stored.total_steps == live.total_steps == 2 * 19
    assert [h["test_accuracy"] for h in stored.history] == [h["test_accuracy"] for h in live.history]
    assert stored.config == live.config and type(stored) is type(live)


def test_summary_rows_hold_numbers_not_text(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store, epochs_done=1, epochs=2)
    row = store.read(run_id).summary()
    assert "epochs" not in row  # "1/2" was text in the CSV
    assert row["epochs_done"] == 1 and row["epochs_planned"] == 2
    assert row["params"] == 2174 and isinstance(row["params"], int)  # 2174.0 in an older result.json
    cancelled = store.read(stored_run(store, "never ran", epochs_done=0, status="cancelled")).summary()
    assert cancelled["epochs_done"] == 0 and cancelled["params"] is None and cancelled["test_accuracy"] is None


def test_delete_goes_to_a_trash_that_restores_and_empties(tmp_path, tiny_data):
    manager = RunManager(RunStore(tmp_path / "runs"), data_loader=lambda: tiny_data)
    store = manager.store
    keep, gone = stored_run(store, "keep"), stored_run(store, "gone")
    manager.delete(gone)
    assert store.ids() == [keep] and [r.id for r in store.list()] == [keep]  # the trash is not a run
    assert [r.name for r in store.trashed()] == ["gone"]
    assert (store.root / ".trash" / gone / "history.jsonl").is_file()  # nothing was lost
    store.restore(gone)
    assert sorted(store.ids()) == sorted([keep, gone]) and store.trashed() == []
    assert store.read(gone).history[0]["test_accuracy"] == 80.0
    with pytest.raises(UserError, match="not in the trash"):
        store.restore(gone)
    manager.delete(gone)
    manager.delete(keep)
    assert store.ids() == [] and len(store.trashed()) == 2
    assert store.empty_trash() == 2
    assert store.trashed() == [] and not any((store.root / ".trash").iterdir())


def test_rename_refuses_a_name_over_the_cap_and_changes_nothing(tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = stored_run(store, "short")
    with pytest.raises(UserError, match=f"250 characters long; use at most {MAX_NAME_LENGTH} characters"):
        store.rename(run_id, "x" * 250)
    assert store.read(run_id).name == "short"
    store.rename(run_id, "y" * MAX_NAME_LENGTH)
    assert store.read(run_id).name == "y" * MAX_NAME_LENGTH


def test_a_form_name_over_the_cap_starts_nothing(manager):
    with pytest.raises(ConfigError, match="250 characters long"):
        manager.submit(cfg(name="n" * 250))
    assert manager.store.ids() == []


def test_close_stops_training_and_leaves_an_interrupted_run(manager, tmp_path):
    """What the server does at exit: the run stops at its next batch, keeps its finished
    epochs and reads back as interrupted; a queued run is not started."""
    running = manager.submit(cfg(epochs=200))
    queued = manager.submit(cfg())
    wait_for_first_epoch(manager, running)
    manager.close(timeout=30)
    assert not manager._worker.is_alive()
    record = RunStore(tmp_path / "runs").read(running)
    assert record.status == "interrupted" and 1 <= len(record.history) < 200 and record.weights == record.path / "model.safetensors"
    assert read_metadata(record.weights)["metrics"]["epoch"] == len(record.history)  # the weights of the last epoch kept
    assert not (record.path / "history.jsonl").read_text().endswith("}{")
    assert RunStore(tmp_path / "runs").read(queued).history == []


def test_per_batch_losses_are_kept_downsampled_in_the_run_folder(tmp_path):
    """A long run's per-batch chart: at most ~2000 points spread over the whole run, on disk."""
    store = RunStore(tmp_path / "runs")
    run_id = store.create(cfg(epochs=10)).name
    writer, live = RunWriter(store.root / run_id, cfg(epochs=10)), LiveRun(run_id, cfg(epochs=10))
    start = {"params": 1, "epochs": 10, "batches_per_epoch": 1000}
    writer.on_run_start(start)
    live.on_run_start(start)
    for step in range(1, 10_001):
        event = {"epoch": (step - 1) // 1000 + 1, "batch": (step - 1) % 1000 + 1, "batches": 1000, "loss": 1.0 / step}
        writer.on_batch_end(event)
        live.on_batch_end(event)
    view = store.view(run_id)
    assert view.total_steps == 10_000
    steps = [s for s, _ in view.batch_losses]
    assert len(steps) <= MAX_BATCH_POINTS + 1 and steps[0] == 1 and steps[-1] > 9_990
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 5  # evenly spread, not only the latest
    assert view.batch_losses[0] == (1, 1.0)
    assert view.batch_losses == live.snapshot().batch_losses  # the live chart shows what a restart shows
    with open(store.root / run_id / "batch_losses.jsonl", "a") as f:
        f.write('[1, 2]\n{"step": "x", "loss": 1}\n{"step": 3')  # wrong shapes and a cut-off line
    assert store.view(run_id).batch_losses == view.batch_losses


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a POSIX feature")
def test_training_runs_below_the_pages_cpu_priority(manager):
    """Under load (a class on one server) a page's script must get the core before the
    training thread does: the trainer thread is niced, the server's threads are not."""
    run_id = manager.submit(cfg())
    wait_for_first_epoch(manager, run_id)
    assert os.getpriority(os.PRIO_PROCESS, manager._worker.native_id) >= TRAINER_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < TRAINER_NICENESS


def test_runs_left_queued_by_a_restart_are_taken_in_the_order_they_were_queued(tmp_path, tiny_data):
    """Two runs queued in the same second went back in the order of their ids' random part (the
    identity tests' "waiting" orphan was, half the time, the one the new server took up)."""
    store = RunStore(tmp_path / "runs", clock=StepClock())  # the marker says when, by the store's clock: no sleep
    config = TrainConfig(model="cnn_a", epochs=1, batch_size=256, threads=1)
    first = store.create(config, "first", run_id="20261201-000000-cnn_a-ffff").name  # ids in the other order
    second = store.create(config, "second", run_id="20261201-000000-cnn_a-0000").name
    store.mark_queued(first)
    store.mark_queued(second)
    assert store.queued_at(second) - store.queued_at(first) == 1_000_000_000  # one tick of the store's clock
    marker = tmp_path / "runs" / first / "queued.json"
    kept = marker.read_bytes()
    marker.write_text('{"since": 12}')  # damaged: the file's own time
    assert store.queued_at(first) == marker.stat().st_mtime_ns
    marker.write_bytes(kept)
    release = threading.Event()
    manager = RunManager(store, data_loader=lambda: (release.wait(60), tiny_data)[1])
    try:
        deadline = time.time() + 30
        while manager.queue_position(first) is not None and time.time() < deadline:
            time.sleep(0.05)
        assert manager.queue_position(first) is None and manager.queue_position(second) == 1  # first taken first
    finally:
        release.set()
        for run_id in (first, second):
            manager.stop(run_id)
        manager.wait_idle(60)


def test_run_ids_start_with_the_stores_clock_and_sort_newest_first(tmp_path):
    store = RunStore(tmp_path, clock=StepClock(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)))
    made = [stored_run(store, name) for name in ("a", "b", "c")]  # within one real second: no sleep
    assert [m[:15] for m in made] == ["20260304-050608", "20260304-050609", "20260304-050610"]
    assert all(re.fullmatch(r"\d{8}-\d{6}-cnn_a-[0-9a-f]{4}", m) for m in made)  # the format existing folders have
    assert store.ids() == made[::-1]
    assert [store.read(m).name for m in store.ids()] == ["c", "b", "a"]
    assert json.loads((tmp_path / made[0] / "run.json").read_text())["created"] == "2026-03-04T05:06:08+00:00"
