"""A fuzz of the run store: every file of a run replaced by each wrong shape, a directory,
a FIFO or a symlink. The store reads each as a warning on that run (never an exception),
and the Train, Compare and Predict pages open with the damaged runs in the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import tomllib
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.config import ShowErrorDetailsConfigOptions
from streamlit.testing.v1 import AppTest

from fmnist_core.config import TrainConfig
from fmnist_core.run_manager import RunManager
from fmnist_core.run_store import ACTIVE, ENDED, RunStore
from tests.conftest import APP, ROOT
from tests.test_checkpoint import craft, small_state

FILES = ("run.json", "config.json", "result.json", "history.jsonl", "owner.json", "model.safetensors")
SHAPES = {"list": [], "object": {}, "null": None, "text": "x", "number": 1, "status-list": {"status": ["finished"]}}
KINDS = [*SHAPES, "directory", "fifo", "symlink"]
# Valid as they stand: an empty run.json only loses the display name (the id is shown), and
# a key run.json does not use is dropped.
HARMLESS = {("run.json", "object"), ("run.json", "status-list")}


@pytest.fixture(scope="module")
def template_run(tmp_path_factory, tiny_data) -> Path:
    """One real finished run (1 epoch of cnn_a on the tiny data set) to corrupt copies of."""
    store = RunStore(tmp_path_factory.mktemp("template") / "runs")
    manager = RunManager(store, data_loader=lambda: tiny_data)
    run_id = manager.submit(TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=256, epochs=1, threads=1))
    assert manager.wait_idle(120)
    folder = store.root / run_id
    assert {p.name for p in folder.iterdir()} >= {*FILES, "model.safetensors"}
    return folder


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


@pytest.mark.parametrize("name", FILES)
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
    cases = [(name, kind) for name in FILES for kind in KINDS if (name, kind) not in HARMLESS]
    runs = damaged_store(root, template_run, cases)
    shutil.copytree(template_run, root / "good-run")
    # Crafted checkpoints (tests/test_checkpoint.py) in finished runs: Predict must skip them.
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
