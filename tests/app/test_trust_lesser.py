"""Trust II's lesser items (issue 21, finding 8): temp files of a killed creation are tidied
and its folder is listed meanwhile; a full disk says "resume" only when resuming works and
result.json counts the epochs its history holds; a visitor sees no server path; Restore checks
the owner in the run manager, not only in the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.formats.identity import load_secret
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import NotAllowed, Policy
from fmnist_core.store.run_store import STALE_TEMP_SECONDS, RunStore, result_from
from fmnist_core.training.run_manager import RunManager
from tests.helpers.disk import fill_disk, mount_tmpfs
from tests.helpers.pages import run_app
from tests.helpers.paths import APP, ROOT

TRAIN = ["-m", "fmnist_core", "train", "--model", "cnn_a", "--optimizer", "adam", "--batch-size", "256", "--threads", "1"]


def train_cli(out: Path, tiny_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *TRAIN, *args, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "FMNIST_DATA_DIR": str(tiny_dir), **env})


def resume_cli(folder: Path, tiny_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fmnist_core", "train", "--resume", str(folder)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "FMNIST_DATA_DIR": str(tiny_dir)})


def age(folder: Path, seconds: float) -> None:
    for path in folder.iterdir():
        os.utime(path, (time.time() - seconds, time.time() - seconds), follow_symlinks=False)


# ---- a kill just before a rename ---------------------------------------------------------------

def test_a_creation_killed_before_run_json_is_listed_then_tidied_away(tmp_path, tiny_dir):
    root = tmp_path / "runs"
    killed = train_cli(root / "r", tiny_dir, "--epochs", "1", FMNIST_CRASH_AT="run.json")
    assert killed.returncode == -9
    [temp] = (root / "r").iterdir()
    assert temp.name.startswith(".run.json.") and temp.name.endswith(".tmp")
    store = RunStore(root)
    assert store.ids() == ["r"]  # seen, not a hidden folder that stays for ever
    record = store.read("r")
    assert record.status == "interrupted" and any("run.json and config.json are missing" in p for p in record.problems)
    assert temp.exists()  # a temp file this young may still be written: left alone
    age(root / "r", STALE_TEMP_SECONDS + 60)
    store.read("r")
    assert not (root / "r").exists() and store.ids() == []


def test_a_temp_config_json_of_a_killed_creation_is_tidied(tmp_path, tiny_dir):
    root = tmp_path / "runs"
    assert train_cli(root / "r", tiny_dir, "--epochs", "1", FMNIST_CRASH_AT="config.json").returncode == -9
    age(root / "r", STALE_TEMP_SECONDS + 60)
    store = RunStore(root)
    assert store.ids() == ["r"] and store.read("r").status == "interrupted"
    assert sorted(p.name for p in (root / "r").iterdir()) == ["run.json"]
    store.trash("r")  # and it can be deleted
    assert store.ids() == [] and store.trashed_ids() == ["r"]


# ---- a full disk --------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """Measured: on 64 KB, cnn_a's first weights (11 KB) fit and its resume state (41 KB)
    does not; on 80 KB the first resume state fits and the second epoch's weights do not."""
    mounted = []

    def make(size: str) -> Path:
        folder = tmp_path / f"disk-{size}"
        mount_tmpfs(folder, size)
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)])


def assert_result_counts_the_history(store: RunStore, run_id: str) -> dict:
    record = store.read(run_id)
    assert record.status == "failed" and record.result["epochs_done"] == len(record.history) == 1, (record.result, record.history)
    return record.result


def test_cli_disk_full_before_any_resume_state_says_train_again(tiny_disk, tiny_dir):
    disk = tiny_disk("64k")
    result = train_cli(disk / "r", tiny_dir, "--epochs", "2")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "free some space, then train it again" in result.stderr.strip().splitlines()[-1]
    message = assert_result_counts_the_history(RunStore(disk), "r")["message"]
    assert "train it again" in message and "resume" not in message.replace("what resuming needs", "")
    refused = resume_cli(disk / "r", tiny_dir)  # as the message says: resuming cannot work
    assert refused.returncode == 2 and "no resume state" in refused.stderr


def test_app_disk_full_before_any_resume_state_says_train_again(tiny_disk, tiny_data):
    manager = RunManager(RunStore(tiny_disk("64k") / "runs"), data_loader=lambda: tiny_data)
    run_id = manager.submit(TrainConfig(model="cnn_a", optimizer="adam", batch_size=256, epochs=2, threads=1))
    assert manager.wait_idle(120)
    message = assert_result_counts_the_history(manager.store, run_id)["message"]
    assert message.endswith("train it again (no epoch was saved with what resuming needs)") and not manager.can_resume(run_id)
    assert manager.view(run_id).message == message


def test_disk_full_after_a_resume_state_says_resume_and_resuming_works(tiny_disk, tiny_dir):
    disk = tiny_disk("80k")
    result = train_cli(disk / "r", tiny_dir, "--epochs", "2")
    assert result.stderr.strip().splitlines()[-1].startswith("error: disk full: no space left to save the run; free some space, then "
                                                              "resume it from its last saved epoch"), result.stderr
    assert_result_counts_the_history(RunStore(disk), "r")
    subprocess.run(["mount", "-o", "remount,size=2m", str(disk)], check=True)  # space freed
    resumed = resume_cli(disk / "r", tiny_dir)
    assert resumed.returncode == 0, resumed.stderr
    record = RunStore(disk).read("r")
    assert record.status == "finished" and len(record.history) == 2


# ---- no server paths for visitors ---------------------------------------------------------------

@pytest.fixture
def studio(tmp_path, monkeypatch):
    def open_page(page: str, mode: str, runs: Path | None = None) -> AppTest:
        monkeypatch.setenv("FMNIST_RUNS_DIR", str(runs or tmp_path / "runs"))
        monkeypatch.setenv("FMNIST_STUDIO_MODE", mode)
        st.cache_resource.clear()
        st.cache_data.clear()  # Home's tables are cached per process: an earlier test's data folder would show
        return run_app(AppTest.from_file(APP, default_timeout=120), page)

    monkeypatch.chdir(ROOT)
    yield open_page
    st.cache_resource.clear()


def test_home_names_the_data_folder_only_in_local_mode(studio):
    from fmnist_core.images.data import load_fashion_mnist

    source = str(load_fashion_mnist().source)
    local = " ".join(c.value for c in studio(None, "local").caption)
    assert source in local
    shared = " ".join(c.value for c in studio(None, "shared").caption)
    assert "Rows of the mosaic" in shared and source not in shared


def test_a_full_disk_on_the_train_page_does_not_show_the_run_folder(studio, tiny_disk):
    disk = tiny_disk("64k")
    runs = disk / "runs"
    runs.mkdir()
    load_secret(None, runs)  # shared mode's identity secret, made while there was room (a server's first start)
    fill_disk(disk)
    at = studio("train", "shared", runs)
    at.button(key="start").click().run()
    errors = [e.value for e in at.error]
    assert any("No space left on device" in e and "Nothing was started" in e for e in errors), errors
    assert not any(str(disk) in e for e in errors), errors


# ---- Restore checks the owner -------------------------------------------------------------------

def test_only_the_owner_or_an_admin_restores_a_run_from_the_trash(tmp_path):
    shared = Policy.from_settings("shared", {"admins": ["admin@example.org"]})
    manager = RunManager(RunStore(tmp_path / "runs"), policy=shared)
    ann, bob = shared.visitor("anon:ann", "ann"), shared.visitor("anon:bob", "bob")
    run_id = manager.store.create(TrainConfig(model="cnn_a", epochs=1), owner="anon:ann").name
    manager.store.write_result(run_id, result_from("stopped", "", [], 0.0, None))
    manager.delete(run_id, visitor=ann)
    with pytest.raises(NotAllowed, match="you cannot restore this run: only the visitor who started it or an admin can"):
        manager.restore(run_id, visitor=bob)
    assert manager.store.trashed_ids() == [run_id] and manager.store.ids() == []
    manager.restore(run_id, visitor=ann)
    assert manager.store.ids() == [run_id]
    manager.delete(run_id, visitor=ann)
    manager.restore(run_id, visitor=shared.visitor("admin@example.org", "admin"))
    assert manager.store.ids() == [run_id] and json.loads((tmp_path / "runs" / run_id / "run.json").read_text())["owner"] == "anon:ann"
