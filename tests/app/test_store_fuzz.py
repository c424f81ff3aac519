"""A fuzz of the run store: every file of a run replaced by each wrong shape, a directory,
a FIFO or a symlink. The store reads each as a warning on that run (never an exception),
and the Train, Compare and Predict pages open with the damaged runs in the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.config import ShowErrorDetailsConfigOptions
from streamlit.testing.v1 import AppTest

from fmnist_core.base.statuses import ACTIVE, ENDED
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore
from tests.helpers.checkpoints import craft, small_state
from tests.helpers.pages import picker
from tests.helpers.paths import APP, ROOT
from tests.helpers.runs import RUN_FILES

SHAPES = {"list": [], "object": {}, "null": None, "text": "x", "number": 1, "status-list": {"status": ["finished"]}}
KINDS = [*SHAPES, "directory", "fifo", "symlink"]
# Valid as they stand: an empty run.json only loses the display name (the id is shown), and
# a key run.json does not use is dropped.
HARMLESS = {("run.json", "object"), ("run.json", "status-list")}


def damage(folder: Path, name: str, kind: str, outside: Path) -> None:
    """Replace `folder/name` with the given kind of wrong content."""
    target = folder / name
    original = target.read_bytes()
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":  # to a perfectly valid copy outside the store: still not followed
        outside.mkdir(parents=True, exist_ok=True)
        (outside / name).write_bytes(original)
        target.symlink_to(outside / name)
    else:
        target.write_text(json.dumps(SHAPES[kind]) + "\n")


def damaged_store(root: Path, template: Path, cases) -> dict[str, tuple[str, str]]:
    """A store with one copy of the template run per (file, kind); {run id: case}."""
    runs = {}
    for i, (name, kind) in enumerate(cases):
        run_id = f"run-{i:02d}-{name.split('.')[0]}-{kind}"
        shutil.copytree(template, root / run_id)
        damage(root / run_id, name, kind, root.parent / "outside" / run_id)
        runs[run_id] = (name, kind)
    return runs


def within(seconds: float, function):
    """Call `function` in a thread; fail (rather than hang) if it blocks, e.g. on a FIFO."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(value=function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the store blocked (a FIFO opened for reading?)"
    return box["value"]


@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize("kind", KINDS)
def test_each_damaged_file_is_a_warning_on_that_run(tmp_path, template_run, name, kind):
    root = tmp_path / "runs"
    runs = damaged_store(root, template_run, [(name, kind)])
    shutil.copytree(template_run, root / "good-run")
    records = {r.id: r for r in within(10, lambda: RunStore(root).list())}
    assert set(records) == {*runs, "good-run"}
    assert records["good-run"].problems == [] and records["good-run"].status == "finished"
    record = records[next(iter(runs))]
    if (name, kind) not in HARMLESS:
        assert record.problems and all(name.split(".")[0] in p for p in record.problems), record.problems
    # What the pages use is always of the documented type.
    assert isinstance(record.name, str) and isinstance(record.config, dict) and isinstance(record.history, list)
    assert all(isinstance(h, dict) and isinstance(h["test_accuracy"], float) for h in record.history)
    assert record.status in (*ACTIVE, *ENDED)
    assert record.summary()["id"] == record.id
    assert RunStore(root).view(record.id).status == record.status


def test_history_lines_of_the_wrong_shape_keep_the_epochs_before_them(tmp_path, template_run):
    folder = tmp_path / "runs" / "r"
    shutil.copytree(template_run, folder)
    good = (folder / "history.jsonl").read_text()
    for bad, words in [("{}", "has no 'epoch'"), ("null", "holds null"), ('{"epoch": 1, "test_accuracy": "high"}', "no 'train_accuracy'"),
                       (good.strip(), "is epoch 1, expected 2")]:
        (folder / "history.jsonl").write_text(good + bad + "\n" + good)
        record = RunStore(tmp_path / "runs").read("r")
        assert len(record.history) == 1
        assert any(words in p and "line 2" in p for p in record.problems), record.problems


def test_a_symlinked_run_folder_is_not_a_run_and_cannot_be_renamed(tmp_path, template_run, caplog):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(template_run, elsewhere)
    root = tmp_path / "runs"
    root.mkdir()
    (root / "linked").symlink_to(elsewhere)
    store = RunStore(root)
    assert store.list() == []
    assert "linked is a symbolic link" in caplog.text
    before = (elsewhere / "run.json").read_bytes()
    with pytest.raises(ValueError, match="not a run folder"):
        store.rename("linked", "pwned")
    assert (elsewhere / "run.json").read_bytes() == before
    assert store.read("linked").weights is None


def test_rename_replaces_a_symlinked_run_json_instead_of_writing_through_it(tmp_path, template_run):
    folder = tmp_path / "runs" / "r"
    shutil.copytree(template_run, folder)
    victim = tmp_path / "victim.json"
    victim.write_text('{"keep": "me"}')
    (folder / "run.json").unlink()
    (folder / "run.json").symlink_to(victim)
    RunStore(tmp_path / "runs").rename("r", "new name")
    assert victim.read_text() == '{"keep": "me"}'
    assert not (folder / "run.json").is_symlink()
    assert RunStore(tmp_path / "runs").read("r").name == "new name"


def test_a_symlinked_weights_file_is_not_offered(tmp_path, template_run):
    folder = tmp_path / "runs" / "r"
    shutil.copytree(template_run, folder)
    (folder / "model.safetensors").rename(tmp_path / "model.safetensors")
    (folder / "model.safetensors").symlink_to(tmp_path / "model.safetensors")
    record = RunStore(tmp_path / "runs").read("r")
    assert record.weights is None
    assert any("model.safetensors is not a regular file" in p for p in record.problems)


# ---- the pages, with every damaged run in one store ------------------------------------


@pytest.fixture(scope="module")
def fuzzed_store(tmp_path_factory, template_run) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fuzz") / "runs"
    root.mkdir()
    cases = [(name, kind) for name in RUN_FILES for kind in KINDS if (name, kind) not in HARMLESS]
    runs = damaged_store(root, template_run, cases)
    shutil.copytree(template_run, root / "good-run")
    # Crafted checkpoints (tests/core/test_checkpoint.py) in finished runs: Predict must skip them.
    nan_state = small_state("cnn_a")
    nan_state["classifier.weight"].fill_(float("nan"))
    for label, model, args, state in [("width", "vgg11", {"width": 256}, small_state()),
                                      ("image-size-0", "cnn_a", {"image_size": 0}, small_state("cnn_a")),
                                      ("int8", "cnn_a", {}, {k: v.to(torch.int8) for k, v in small_state("cnn_a").items()}),
                                      ("nan", "cnn_a", {}, nan_state)]:
        shutil.copytree(template_run, root / f"crafted-{label}")
        craft(root / f"crafted-{label}" / "model.safetensors", model, args, state)
        RunStore(root).rename(f"crafted-{label}", f"crafted-{label}")
    return root, runs


@pytest.fixture
def page(fuzzed_store, monkeypatch):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(fuzzed_store[0]))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()

    def open_page(name: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page(f"app_pages/{name}.py").run()
        return at

    yield open_page
    st.cache_resource.clear()


@pytest.mark.parametrize("name", ["train", "compare"])
def test_pages_open_with_every_damaged_run_and_warn_about_each(page, fuzzed_store, name):
    at = page(name)
    assert not at.exception, at.exception
    warned = " ".join(re.sub(r"\\(.)", r"\1", w.value) for w in at.warning)  # Markdown escapes, as the browser shows them
    missing = [run_id for run_id in fuzzed_store[1] if run_id not in warned]
    assert not missing, f"no warning for {missing}"


def test_predict_keeps_its_model_picker_and_skips_crafted_checkpoints(page):
    at = page("predict")
    assert not at.exception, at.exception
    options = at.selectbox(key="model_choice").options
    assert any("(pretrained)" in o for o in options)
    assert [o for o in options if "(run)" in o] == [o for o in options if "cnn_a" in o and "(run)" in o]
    assert not any("crafted" in o for o in options), options
    shown = [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]  # as the browser shows the escaped Markdown
    assert any("crafted-nan" in w and "NaN" in w for w in shown), shown


def test_visitors_never_get_tracebacks():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    value = config["client"]["showErrorDetails"]
    assert value == ShowErrorDetailsConfigOptions.NONE and value in set(ShowErrorDetailsConfigOptions)


# ---- batch_losses.jsonl: read with a bound, never through a link or from a FIFO ----------------

BATCH_KINDS = [*SHAPES, "directory", "fifo", "symlink-to-dev-zero", "huge"]


def damage_batch_losses(folder: Path, kind: str) -> None:
    target = folder / "batch_losses.jsonl"
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink-to-dev-zero":
        target.symlink_to("/dev/zero")
    elif kind == "huge":  # 40 MB of valid points: only the newest are read, the total from the first line
        line = b'{"step": 1, "loss": 0.5}\n'
        with open(target, "wb") as f:
            f.write(b'{"total_steps": 7}\n')
            f.write(line * (40 * 2**20 // len(line)))
            f.write(b'{"step": 99, "loss": 0.25}\n')
    else:
        target.write_text(json.dumps(SHAPES[kind]) + "\n")


@pytest.mark.parametrize("kind", BATCH_KINDS)
def test_each_damaged_batch_losses_file_costs_only_the_chart(tmp_path, template_run, kind):
    root = tmp_path / "runs"
    shutil.copytree(template_run, root / "r")
    damage_batch_losses(root / "r", kind)
    view = within(10, lambda: RunStore(root).view("r"))
    assert view.status == "finished" and len(view.history) == 1
    assert all(isinstance(s, int) and isinstance(v, float) for s, v in view.batch_losses)
    if kind == "huge":
        assert view.total_steps == 7 and view.batch_losses[-1] == (99, 0.25)
        assert len(view.batch_losses) < 50_000  # ~1 MB of the 40 MB
    elif kind in ("directory", "fifo", "symlink-to-dev-zero"):
        assert view.batch_losses == [] and view.total_steps is None


BOUNDED_READ = """
import resource, sys
from fmnist_core.store.run_store import RunStore
store = RunStore(sys.argv[1])
size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
bound = size + 256 * 2**20  # what is mapped now, and 256 MB: /dev/zero or 40 MB read whole would pass it
resource.setrlimit(resource.RLIMIT_AS, (bound, bound))
for run_id in sys.argv[2:]:
    view = store.view(run_id)
    print(run_id, len(view.batch_losses), view.total_steps)
"""


def test_batch_losses_are_read_within_a_memory_bound(tmp_path, template_run):
    """/dev/zero behind a symlink and a 40 MB file, read in a process whose address space is
    capped at 256 MB over what it has mapped: the store reads neither whole."""
    root = tmp_path / "runs"
    for kind in ("symlink-to-dev-zero", "huge"):
        shutil.copytree(template_run, root / kind)
        damage_batch_losses(root / kind, kind)
    result = subprocess.run([sys.executable, "-c", BOUNDED_READ, str(root), "symlink-to-dev-zero", "huge"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[0] == "symlink-to-dev-zero 0 None" and lines[1].startswith("huge ") and lines[1].endswith(" 7"), lines


# ---- sweep records: each wrong shape a warning on that sweep ------------------------------------

def valid_sweep_record(sweep_id: str) -> dict:
    return {"id": sweep_id, "name": "fine", "status": "finished", "created": "2026-01-01T00:00:00", "pid": 1, "host": "elsewhere",
            "space": [{"name": "lr", "kind": "grid", "values": [0.01, 0.1], "low": None, "high": None}],
            "base": TrainConfig(model="cnn_a", epochs=1).to_dict(), "options": {"trials": 2, "search": "random"},
            "trial_runs": [], "message": "", "seconds": 1.0, "best_run": None, "ray_start_s": 1.0}


# The cases ({"space": 5}, [5], {"status": ["x"]}), and each key of the record given a
# value of a wrong type or shape.
SWEEP_CASES = {
    "space-5": {"space": 5}, "status-list": {"status": ["x"]}, "status-unknown": {"status": "exploded"},
    "space-of-numbers": {"space": [5]}, "space-unknown-setting": {"space": [{"name": "nope", "kind": "grid"}]},
    "space-unsweepable": {"space": [{"name": "threads", "kind": "grid"}]}, "space-twice": {"space": [{"name": "lr"}, {"name": "lr"}]},
    "space-name-list": {"space": [{"name": ["lr"]}]}, "base-text": {"base": "x"}, "options-list": {"options": [1]},
    "trial-runs-number": {"trial_runs": 5}, "trial-runs-objects": {"trial_runs": [{}]}, "name-number": {"name": 5},
    "message-list": {"message": ["x"]}, "created-null": {"created": None}, "seconds-text": {"seconds": "x"},
    "best-run-number": {"best_run": 5}, "ray-start-text": {"ray_start_s": "soon"}, "pid-text": {"pid": "1"},
}
WHOLE_CASES = {**{f"whole-{kind}": SHAPES[kind] for kind in SHAPES}, "whole-list-5": [5]}
SPECIAL_CASES = ("directory", "fifo", "symlink-to-dev-zero")


def sweep_store_with_every_case(root: Path) -> list[str]:
    """A .sweeps folder with one record per case (and one valid record); returns the damaged ids."""
    from fmnist_core.base.files import atomic_write_json

    folder = root / ".sweeps"
    folder.mkdir(parents=True)
    atomic_write_json(folder / "sweep-good.json", valid_sweep_record("sweep-good"))
    for case, change in SWEEP_CASES.items():
        atomic_write_json(folder / f"sweep-{case}.json", {**valid_sweep_record(f"sweep-{case}"), **change})
    for case, value in WHOLE_CASES.items():
        (folder / f"sweep-{case}.json").write_text(json.dumps(value))
    os.mkdir(folder / "sweep-directory.json")
    os.mkfifo(folder / "sweep-fifo.json")
    (folder / "sweep-symlink-to-dev-zero.json").symlink_to("/dev/zero")
    return [f"sweep-{case}" for case in (*SWEEP_CASES, *WHOLE_CASES, *SPECIAL_CASES)]


def test_each_damaged_sweep_record_is_a_warning_on_that_sweep(tmp_path):
    from fmnist_core.base.statuses import SWEEP_ACTIVE, SWEEP_ENDED
    from fmnist_core.sweeps.sweep_store import SweepStore

    damaged = sweep_store_with_every_case(tmp_path / "runs")
    records = {r.id: r for r in within(10, lambda: SweepStore(RunStore(tmp_path / "runs")).list())}
    assert set(records) == {*damaged, "sweep-good"}
    assert records["sweep-good"].problems == [] and records["sweep-good"].varied == ["lr"]
    for sweep_id in damaged:
        record = records[sweep_id]
        assert record.problems and all(sweep_id in p for p in record.problems), (sweep_id, record.problems)
        # what the Sweep page uses is always of the documented type
        assert record.status in (*SWEEP_ACTIVE, *SWEEP_ENDED) and isinstance(record.name, str) and isinstance(record.message, str)
        assert all(isinstance(d, dict) and isinstance(d["name"], str) for d in record.space)
        assert isinstance(record.base, dict) and isinstance(record.options, dict)
        assert all(isinstance(t, str) for t in record.trial_runs)
        assert record.seconds is None or isinstance(record.seconds, (int, float))
        assert record.ray_start_s is None or isinstance(record.ray_start_s, (int, float))


def test_the_sweep_page_opens_each_damaged_sweep(tmp_path, monkeypatch):
    damaged = sweep_store_with_every_case(tmp_path / "runs")
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.run()
        at.switch_page("app_pages/sweep.py").run()  # (the store's reads never block: the test above)
        assert not at.exception, at.exception
        for sweep_id in damaged:
            picker(at).set_value(sweep_id).run()
            assert not at.exception, (sweep_id, at.exception)
            warned = " ".join(re.sub(r"\\(.)", r"\1", w.value) for w in at.warning)
            assert sweep_id in warned, (sweep_id, warned)
    finally:
        st.cache_resource.clear()


def test_the_last_log_line_is_read_from_the_end_and_never_from_a_special_file(tmp_path):
    from fmnist_core.sweeps.sweep_store import SweepStore

    sweeps = SweepStore(RunStore(tmp_path / "runs"))
    sweeps.root.mkdir(parents=True)
    assert sweeps.last_log_line("sweep-none") == ""
    with open(sweeps.log_path("sweep-big"), "w") as f:
        f.write("starting\n" + "progress\n" * 2_000_000 + "ValueError: the last words\n\n")
    assert sweeps.last_log_line("sweep-big") == "ValueError: the last words"
    sweeps.log_path("sweep-zero").symlink_to("/dev/zero")
    os.mkfifo(sweeps.log_path("sweep-fifo"))
    assert within(10, lambda: (sweeps.last_log_line("sweep-zero"), sweeps.last_log_line("sweep-fifo"))) == ("", "")
