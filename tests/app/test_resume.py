"""Killed at the wrong moment: kill -9 at each write step, then a consistency check and a
resume that ends with exactly the numbers of a run never interrupted; queued runs survive
a restart; a reused pid is not the run's process; a full disk ends the run as failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import process_start_time
from fmnist_core.formats.checkpoint import read_metadata
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import RunManager, train_run
from tests.helpers.disk import fill_disk, mount_tmpfs

# Every piece of state a resume must restore: dropout (torch's global RNG), augmentation
from tests.helpers.pages import run_app
from tests.helpers.paths import APP, ROOT

# and batch order (the run's generator), momentum (optimizer), one-cycle (scheduler), EMA.
CONFIG = dict(model="cnn_c", optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, schedule="onecycle", augment=True,
              ema=0.9, label_smoothing=0.1, batch_size=256, epochs=2, seed=3, threads=1, device="cpu")
TIMING = ("seconds", "images_per_s", "elapsed_s")


def numbers(history: list[dict]) -> list[dict]:
    """A history without its wall-clock figures: what must match exactly."""
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data) -> Path:
    """The same run, never interrupted."""
    store = RunStore(tmp_path_factory.mktemp("reference") / "runs")
    config = TrainConfig(**CONFIG)
    run_id = store.create(config, run_id="ref").name
    torch.set_num_threads(1)
    assert train_run(store, run_id, config, data=tiny_data)["status"] == "finished"
    return store.root / run_id


def assert_same_as_reference(folder: Path, reference: Path) -> None:
    record = RunStore(folder.parent).read(folder.name)
    assert record.status == "finished" and record.problems == []
    assert len(record.history) == 2
    assert not (folder / "resume.safetensors").exists()  # nothing left to resume: its space is freed
    assert numbers(record.history) == numbers(RunStore(reference.parent).read(reference.name).history)
    ours, theirs = weights(folder), weights(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


class StopAfterFirstEpoch:
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_epoch_end(self, record):
        self.stop.set()


def test_a_resumed_run_ends_with_exactly_the_numbers_of_an_unbroken_one(tmp_path, tiny_data, reference):
    store = RunStore(tmp_path / "runs")
    config = TrainConfig(**CONFIG)
    run_id = store.create(config, run_id="cut").name
    stop = threading.Event()
    assert train_run(store, run_id, config, callbacks=[StopAfterFirstEpoch(stop)], stop=stop, data=tiny_data)["status"] == "stopped"
    (store.root / run_id / "result.json").unlink()  # as if the process had died after epoch 1
    assert store.read(run_id).status == "interrupted" and len(store.read(run_id).history) == 1
    manager = RunManager(store, data_loader=lambda: tiny_data)
    manager.resume(run_id)
    assert [h["epoch"] for h in manager.view(run_id).history] == [1]  # the live view starts from epoch 1
    assert manager.wait_idle(120)
    assert_same_as_reference(store.root / run_id, reference)
    with pytest.raises(UserError, match="is finished; only an interrupted, stopped or failed run can be resumed"):
        manager.resume(run_id)


class StopDuringEpoch:
    """Stops the run at its first batch event of `epoch`: a Stop click in the middle of it."""

    def __init__(self, stop: threading.Event, epoch: int):
        self.stop, self.epoch = stop, epoch

    def on_batch_end(self, event):
        if event["epoch"] == self.epoch:
            self.stop.set()


def steps_of(points: list[tuple[int, float]]) -> list[int]:
    return [step for step, _ in points]


def test_a_resumed_runs_batch_loss_chart_keeps_the_points_from_before_the_stop(tmp_path, tiny_data):
    """Issue 23 item 7: after Resume the per-batch chart (live, once it ends, after a restart)
    shows the points from before the stop, then the new ones, on one axis of the whole run."""
    store = RunStore(tmp_path / "runs")
    config = TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=64, epochs=3, seed=1, threads=1, device="cpu")
    run_id = store.create(config, run_id="cut").name
    stop = threading.Event()
    assert train_run(store, run_id, config, callbacks=[StopDuringEpoch(stop, 2)], stop=stop, data=tiny_data)["status"] == "stopped"
    per_epoch = -(-600 // 64)
    total = 3 * per_epoch
    before = store.view(run_id).batch_losses
    # epoch 1 from its first batch to its last, and epoch 2's first batch (dropped with its epoch)
    assert steps_of(before)[0] == 1 and per_epoch in steps_of(before) and steps_of(before)[-1] == per_epoch + 1

    manager = RunManager(store, data_loader=lambda: tiny_data)
    manager.resume(run_id)
    seen_live = []
    while manager.active_ids():
        live = manager.live(run_id)
        if live.status == "running" and live.progress.get("epoch", 0) >= 2:
            seen_live.append(live.batch_losses)
        time.sleep(0.01)
    assert manager.wait_idle(120) and manager.view(run_id).status == "finished"

    kept = [(step, loss) for step, loss in before if step <= per_epoch]  # epoch 1's points, as they were
    for points in seen_live:  # while it trained
        assert points[: len(kept)] == kept
        assert steps_of(points) == sorted(set(steps_of(points)))
    for view in (manager.view(run_id), store.view(run_id), RunStore(store.root).view(run_id)):  # ended; after a restart
        steps = steps_of(view.batch_losses)
        assert view.total_steps == total
        assert view.batch_losses[: len(kept)] == kept, steps
        assert steps == sorted(set(steps)), steps  # one x-axis: each step once, in order
        assert steps[len(kept)] == per_epoch + 1 and steps[-1] == total, steps  # then epochs 2 and 3, to the end
    assert manager.view(run_id).batch_losses == store.view(run_id).batch_losses  # live and disk agree
    text = (store.root / run_id / "batch_losses.jsonl").read_text()
    assert text.count("total_steps") == 1


def test_a_run_without_a_resume_state_says_so(tmp_path, tiny_data):
    store = RunStore(tmp_path / "runs")
    run_id = store.create(TrainConfig(**CONFIG), run_id="empty").name
    (store.root / run_id / "owner.json").write_text(json.dumps({"pid": 999_999_999}))
    with pytest.raises(UserError, match="no resume state"):
        RunManager(store, data_loader=lambda: tiny_data).resume(run_id)
    assert not (store.root / run_id / "result.json").exists()


# ---- kill -9 at each write step ---------------------------------------------------------

TRAIN_IN_A_CHILD = """
import sys
import torch
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.images.data import load_fashion_mnist
from fmnist_core.training.run_manager import train_run
from fmnist_core.store.run_store import RunStore
torch.set_num_threads(1)
store = RunStore(sys.argv[1])
config = TrainConfig(**{CONFIG})
store.create(config, run_id="r")
train_run(store, "r", config, data=load_fashion_mnist(sys.argv[2]))
"""


@pytest.mark.parametrize("step, epochs_kept", [
    ("model.safetensors@2", 1),  # mid-save of epoch 2's weights: a temp file is left
    ("resume.safetensors@2", 2),  # weights of epoch 2 saved, history not yet: weights ahead
    ("history.jsonl@2", 2),  # weights and resume state saved, history line not yet
    ("result.json", 2),  # every epoch saved, the result is not
])
def test_kill_9_at_each_write_step_leaves_a_consistent_resumable_run(tmp_path, tiny_dir, reference, tiny_data, step, epochs_kept):
    root = tmp_path / "runs"
    code = TRAIN_IN_A_CHILD.replace("{CONFIG}", repr(CONFIG))
    child = subprocess.run([sys.executable, "-c", code, str(root), str(tiny_dir)], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "FMNIST_CRASH_AT": step}, timeout=300)
    assert child.returncode == -9, child.stderr  # SIGKILL: no handler ran
    folder = root / "r"
    if step != "history.jsonl@2":  # history is appended in place; the others are temp file + rename
        assert list(folder.glob(".*.tmp")), "the kill should have left a temp file"

    record = RunStore(root).read("r")  # the next time the store opens the run
    assert record.status == "interrupted"
    assert not list(folder.glob(".*.tmp")), "temp files of the killed save are removed"
    assert len(record.history) == epochs_kept == read_metadata(folder)["metrics"]["epoch"]
    assert [json.loads(line)["epoch"] for line in (folder / "history.jsonl").read_text().splitlines()] == list(range(1, epochs_kept + 1))
    assert record.problems == []

    manager = RunManager(RunStore(root), data_loader=lambda: tiny_data)
    manager.resume("r")
    assert manager.wait_idle(120)
    assert_same_as_reference(folder, reference)


def test_train_resume_on_the_command_line(tmp_path, tiny_dir, reference):
    root = tmp_path / "runs"
    code = TRAIN_IN_A_CHILD.replace("{CONFIG}", repr(CONFIG))
    subprocess.run([sys.executable, "-c", code, str(root), str(tiny_dir)], cwd=ROOT, env={**os.environ, "FMNIST_CRASH_AT": "history.jsonl@2"},
                   capture_output=True, timeout=300)
    env = {**os.environ, "FMNIST_DATA_DIR": str(tiny_dir)}
    result = subprocess.run([sys.executable, "-m", "fmnist_core", "train", "--resume", str(root / "r"), "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["epochs"] == 2
    assert_same_as_reference(root / "r", reference)
    again = subprocess.run([sys.executable, "-m", "fmnist_core", "train", "--resume", str(root / "r")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        "error: run r is finished; only an interrupted, stopped or failed run can be resumed"]


# ---- the queue survives a restart ---------------------------------------------------------

QUEUE_AND_DIE = """
import sys
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.images.data import load_fashion_mnist
from fmnist_core.training.run_manager import RunManager
from fmnist_core.store.run_store import RunStore
data = load_fashion_mnist(sys.argv[2])
manager = RunManager(RunStore(sys.argv[1]), data_loader=lambda: data)
for name in ("first", "second", "third"):
    manager.submit(TrainConfig(model="cnn_a", optimizer="adam", batch_size=256, epochs=1, threads=1), name=name)
manager.wait_idle(300)
"""


def test_queued_runs_survive_a_restart(tmp_path, tiny_dir, tiny_data):
    root = tmp_path / "runs"
    # The server dies (kill -9) while its first run saves its first epoch: two still queued.
    child = subprocess.run([sys.executable, "-c", QUEUE_AND_DIE, str(root), str(tiny_dir)], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "FMNIST_CRASH_AT": "model.safetensors@1"}, timeout=300)
    assert child.returncode == -9, child.stderr
    before = {r.name: r.status for r in RunStore(root).list()}
    assert before == {"first": "interrupted", "second": "queued", "third": "queued"}
    manager = RunManager(RunStore(root), data_loader=lambda: tiny_data)  # the restarted server
    assert manager.wait_idle(120)
    after = {r.name: r.status for r in manager.list_runs()}
    assert after == {"first": "interrupted", "second": "finished", "third": "finished"}
    assert not list(root.glob("*/queued.json"))


# ---- pid and start time -------------------------------------------------------------------

def test_a_reused_pid_is_not_the_runs_process(tmp_path, tiny_data):
    store = RunStore(tmp_path / "runs")
    run_id = store.create(TrainConfig(**CONFIG), run_id="r").name
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.time() + 10
        while process_start_time(other.pid) is None and time.time() < deadline:
            time.sleep(0.05)
        started = process_start_time(other.pid)
        owner = store.root / run_id / "owner.json"
        owner.write_text(json.dumps({"pid": other.pid, "started": started}))
        assert store.read(run_id).status == "running"
        owner.write_text(json.dumps({"pid": other.pid, "started": started - 1}))  # same pid, another process
        assert store.read(run_id).status == "interrupted"
    finally:
        other.kill()
        other.wait()


# ---- a full disk --------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (skipped where mounting is not allowed)."""
    folder = tmp_path / "small"
    mount_tmpfs(folder, "2m")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


def test_a_full_disk_ends_the_run_as_failed_and_the_queue_goes_on(small_disk, tiny_data):
    manager = RunManager(RunStore(small_disk / "runs"), data_loader=lambda: tiny_data)
    # mlp4's weights (583k params, 2.3 MB) cannot fit on a 2 MB disk; cnn_a's (9 KB) can.
    big = manager.submit(TrainConfig(model="mlp4", optimizer="adam", batch_size=256, epochs=2, threads=1))
    small = manager.submit(TrainConfig(model="cnn_a", optimizer="adam", batch_size=256, epochs=1, threads=1))
    assert manager.wait_idle(120)
    view = manager.view(big)
    assert view.status == "failed" and view.message.startswith("disk full")
    record = manager.store.read(big)
    assert record.status == "failed" and record.result["message"].startswith("disk full")
    assert not list((small_disk / "runs" / big).glob(".*.tmp"))
    assert manager.view(small).status == "finished"
    manager.delete(big)  # Delete works on it
    assert big not in manager.store.ids()


def test_a_full_disk_refuses_a_new_run_and_leaves_nothing(small_disk, tiny_data):
    manager = RunManager(RunStore(small_disk / "runs"), data_loader=lambda: tiny_data)
    (small_disk / "runs").mkdir()
    fill_disk(small_disk)
    with pytest.raises(UserError, match="No space left on device"):
        manager.submit(TrainConfig(model="cnn_a", epochs=1))
    assert list((small_disk / "runs").iterdir()) == []
    assert manager.active_ids() == set()


# ---- the Train page -------------------------------------------------------------------------

def open_train_page(monkeypatch, runs: Path, data: Path | None = None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FMNIST_RUNS_DIR", str(runs))
    if data is not None:
        monkeypatch.setenv("FMNIST_DATA_DIR", str(data))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    return run_app(AppTest.from_file(APP, default_timeout=120), "train")


def test_the_train_page_resumes_an_interrupted_run(tmp_path, tiny_dir, tiny_data, reference, monkeypatch):
    import streamlit as st

    store = RunStore(tmp_path / "runs")
    config = TrainConfig(**CONFIG)
    store.create(config, run_id="cut")
    stop = threading.Event()
    train_run(store, "cut", config, callbacks=[StopAfterFirstEpoch(stop)], stop=stop, data=tiny_data)
    (store.root / "cut" / "result.json").unlink()
    (store.root / "cut" / "owner.json").write_text(json.dumps({"pid": 999_999_999}))  # its process is gone
    try:
        at = open_train_page(monkeypatch, store.root, tiny_dir)
        at.button(key="resume-cut").click().run()
        assert not at.exception, at.exception
        deadline = time.time() + 120
        while RunStore(store.root).read("cut").status != "finished":
            assert time.time() < deadline, "the resumed run did not finish"
            time.sleep(0.5)
        at.run()
        assert any("finished" in m.value for m in at.markdown)
        assert_same_as_reference(store.root / "cut", reference)
    finally:
        st.cache_resource.clear()


def test_the_train_page_says_when_the_disk_is_full(small_disk, monkeypatch):
    import streamlit as st

    runs = small_disk / "runs"
    runs.mkdir()
    fill_disk(small_disk)
    try:
        at = open_train_page(monkeypatch, runs)
        at.button(key="start").click().run()
        assert not at.exception, at.exception
        assert any("No space left on device" in e.value and "Nothing was started" in e.value for e in at.error), [e.value for e in at.error]
        assert list(runs.iterdir()) == []
    finally:
        st.cache_resource.clear()


def test_the_cli_on_a_full_disk_is_one_line_and_a_failed_run(small_disk, tiny_dir):
    env = {**os.environ, "FMNIST_DATA_DIR": str(tiny_dir)}
    out = small_disk / "runs" / "big"
    result = subprocess.run([sys.executable, "-m", "fmnist_core", "train", "--model", "mlp4", "--batch-size", "256", "--epochs", "1",
                             "--threads", "1", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-1].startswith("error: disk full"), result.stderr
    assert "Traceback" not in result.stderr
    record = RunStore(out.parent).read("big")
    assert record.status == "failed" and record.result["message"].startswith("disk full")
    assert not list(out.glob(".*.tmp"))


def test_sessions_reading_a_killed_run_at_once_repair_it_once(tmp_path, tiny_dir):
    root = tmp_path / "runs"
    code = TRAIN_IN_A_CHILD.replace("{CONFIG}", repr(CONFIG))
    subprocess.run([sys.executable, "-c", code, str(root), str(tiny_dir)], cwd=ROOT, env={**os.environ, "FMNIST_CRASH_AT": "history.jsonl@2"},
                   capture_output=True, timeout=300)
    store = RunStore(root)
    barrier = threading.Barrier(8)

    def read():
        barrier.wait()
        return len(store.read("r").history)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len((root / "r" / "history.jsonl").read_text().splitlines()) == 2
