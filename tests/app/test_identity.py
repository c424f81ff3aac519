"""Anonymous visitors' signed browser identity (fmnist_core.formats.identity) and who may cancel or
resume the runs a restarted server inherits (access.Policy, RunManager.is_orphan). The browser
side (the cookie across a refresh, a new tab and a restart) is tests/e2e/test_identity_browser.py."""

from __future__ import annotations

import os
import stat
import threading

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.base.errors import UserError
from fmnist_core.formats.identity import (
    COOKIE_MAX_AGE_S,
    SECRET_FILE,
    load_secret,
    new_visitor_id,
    token_for,
    visitor_from_token,
)
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import NotAllowed, Policy, Visitor
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import RunManager, train_run
from tests.helpers.pages import run_app
from tests.helpers.paths import APP, ROOT

SECRET = b"k" * 64
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32}


# ---- signing and checking a token -------------------------------------------------------------


def test_a_token_proves_its_visitor_and_nothing_else():
    ann, bob = new_visitor_id(), new_visitor_id()
    assert ann != bob and ann.startswith("anon:") and len(ann) == len("anon:") + 32
    token = token_for(SECRET, ann)
    assert visitor_from_token(SECRET, token) == ann
    assert token_for(SECRET, ann) == token  # the same id signs the same way: a refresh keeps it
    raw_id, signature = token.split(".")
    # Tampered: another id under ann's signature, a flipped signature digit, a truncated one.
    assert visitor_from_token(SECRET, f"{bob.removeprefix('anon:')}.{signature}") is None
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert visitor_from_token(SECRET, f"{raw_id}.{flipped}") is None
    assert visitor_from_token(SECRET, f"{raw_id}.{signature[:-2]}") is None
    # Signed by another server (another secret).
    assert visitor_from_token(b"z" * 64, token) is None
    assert COOKIE_MAX_AGE_S == 365 * 24 * 3600


@pytest.mark.parametrize("garbage", [
    None, "", ".", "anon:x", 5, b"bytes", ["list"], "a" * 10_000, "0" * 32, "0" * 32 + ".",
    "0" * 32 + "." + "g" * 64, "0" * 32 + "." + "0" * 64, "0" * 32 + "." + "0" * 64 + "\n", " " + "0" * 32 + "." + "0" * 64,
    "../../etc/passwd", "0" * 32 + "." + "0" * 64 + "." + "0" * 64, "%00" * 40,
])
def test_garbage_proves_nothing(garbage):
    assert visitor_from_token(SECRET, garbage) is None


def test_only_ids_the_server_made_get_a_token():
    """A logged-in user's e-mail, or an id with characters a cookie cannot hold, never becomes one."""
    for visitor_id in ("ann@example.org", "anon:bob", "anon:" + "0" * 31 + ";", "local", "anon:" + "A" * 32):
        assert token_for(SECRET, visitor_id) is None


# ---- the secret ---------------------------------------------------------------------------------


def test_the_secret_is_made_once_readable_by_its_user_only_and_kept(tmp_path):
    runs = tmp_path / "runs"  # not there yet: a fresh install
    secret = load_secret(None, runs)
    path = runs / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(secret) == 64
    assert load_secret(None, runs) == secret  # a restart: the same secret, so the same visitors
    assert sorted(p.name for p in runs.iterdir()) == [SECRET_FILE]  # no temporary file left behind
    assert RunStore(runs).ids() == []  # the store's own file, not a run
    # A token signed before the restart still proves its visitor after it.
    ann = new_visitor_id()
    assert visitor_from_token(load_secret(None, runs), token_for(secret, ann)) == ann


def test_a_configured_secret_wins_and_must_be_long(tmp_path):
    assert load_secret("s" * 40, tmp_path) == b"s" * 40
    assert not (tmp_path / SECRET_FILE).exists()
    for bad in ("short", 12345, ["x" * 40]):
        with pytest.raises(UserError, match=r"\[studio\] identity_secret must be a string of at least 32 characters"):
            load_secret(bad, tmp_path)


@pytest.mark.parametrize("plant", ["empty", "short", "symlink", "fifo", "directory", "giant"])
def test_a_planted_secret_file_is_one_clear_error(tmp_path, plant):
    """Someone who can write into the run store must not choose the secret, hang the server or
    make it read /dev/zero."""
    path = tmp_path / SECRET_FILE
    if plant == "empty":
        path.write_text("")
    elif plant == "short":
        path.write_text("1234\n")
    elif plant == "symlink":
        (tmp_path / "elsewhere").write_text("x" * 64)
        path.symlink_to(tmp_path / "elsewhere")
    elif plant == "fifo":
        os.mkfifo(path)
    elif plant == "directory":
        path.mkdir()
    else:
        path.write_text("x" * 5000)
    with pytest.raises(UserError, match=r"delete it and restart the server \(anonymous visitors then get new identities\)"):
        load_secret(None, tmp_path)


def test_a_store_that_cannot_be_written_is_one_clear_error(tmp_path):
    (tmp_path / "a-file").write_text("")  # the run store's path runs through a file (root ignores read-only modes)
    with pytest.raises(UserError, match=r"cannot keep an identity secret in .*runs \(Not a directory\): make it writable, "
                                        "or set identity_secret in the \\[studio\\] section"):
        load_secret(None, tmp_path / "a-file" / "runs")


# ---- the Policy's orphan rule -------------------------------------------------------------------


@pytest.mark.parametrize("settings, login, anyone", [
    ({}, False, True),                                  # no admins at all
    ({"admins": ["admin@example.org"]}, False, True),   # admins listed, but nobody can log in
    ({}, True, True),                                   # login, but no admins
    ({"admins": ["admin@example.org"]}, True, False),   # an admin can log in and tidy up
])
def test_orphans_are_everyones_only_where_no_admin_can_log_in(settings, login, anyone):
    policy = Policy.from_settings("shared", settings, login=login)
    ann, bob = policy.visitor("anon:ann", "ann"), policy.visitor("anon:bob", "bob")
    assert policy.orphans_are_everyones is anyone
    assert policy.can_modify(bob, "anon:ann", orphan=True) is anyone
    assert policy.can_modify(ann, "anon:ann", orphan=True)  # the owner, always
    assert not policy.can_modify(bob, "anon:ann")  # a run of today's server: its owner's
    assert not policy.can_modify(bob, "local", orphan=True)  # the command line's runs stay its own
    assert not Policy().orphans_are_everyones  # local mode: everyone is an admin anyway


def test_the_secret_setting_is_known_to_the_studio_section():
    assert Policy.from_settings("shared", {"identity_secret": "s" * 40}).shared
    with pytest.raises(UserError, match="has no setting 'identity'; use admins, identity_secret and"):
        Policy.from_settings("shared", {"identity": "s" * 40})


# ---- the run manager after a restart ------------------------------------------------------------


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{"model": "cnn_a", "epochs": 2, "batch_size": 256, "threads": 1, **kw})


class StopAfterFirstEpoch:
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_epoch_end(self, record):
        self.stop.set()


def cut_run(store: RunStore, data) -> str:
    """Ann's run that trained an epoch when its server died (interrupted, resumable)."""
    cut = store.create(tiny(), "ann cut", owner="anon:ann").name
    stop = threading.Event()
    assert train_run(store, cut, tiny(), callbacks=[StopAfterFirstEpoch(stop)], stop=stop, data=data)["status"] == "stopped"
    (store.root / cut / "result.json").unlink()  # the process died after epoch 1
    return cut


def leave_as_a_killed_server_would(store: RunStore, data) -> tuple[str, str, str]:
    """Ann's three runs when her server died: one cut after an epoch, two waiting in the queue."""
    cut = cut_run(store, data)
    waiting = []
    for name in ("ann first", "ann second"):
        run_id = store.create(tiny(epochs=1), name, owner="anon:ann").name
        store.mark_queued(run_id)
        waiting.append(run_id)
    assert [store.read(r).status for r in (cut, *waiting)] == ["interrupted", "queued", "queued"]
    return cut, *waiting


@pytest.fixture
def restarted(tmp_path, tiny_data):
    """A shared server started on the store a killed one left; its worker waits for `release`
    before training, so the inherited runs stay queued while a test looks at them."""
    release = threading.Event()
    managers = []

    def start(policy: Policy) -> tuple[RunManager, tuple[str, str, str]]:
        store = RunStore(tmp_path / "runs")
        runs = leave_as_a_killed_server_would(store, tiny_data)

        def data():
            release.wait(60)
            return tiny_data

        managers.append(RunManager(store, data_loader=data, policy=policy))
        return managers[-1], runs

    yield start
    release.set()
    for manager in managers:
        for run_id in manager.active_ids():
            manager.stop(run_id, visitor=Visitor("cleanup", "cleanup", is_admin=True))
        manager.wait_idle(120)


def test_without_admins_anyone_cancels_or_resumes_what_a_restart_left(restarted):
    manager, (cut, training, waiting) = restarted(Policy.from_settings("shared", {"limits": {"runs_per_visitor": 4}}, login=False))
    bob = manager.policy.visitor("anon:bob", "bob")
    assert all(manager.is_orphan(r) for r in (cut, training, waiting))
    # Another visitor cancels the run still waiting and stops the one the new server took up...
    manager.stop(waiting, visitor=bob)
    assert manager.view(waiting).status == "cancelled" and manager.store.read(waiting).status == "cancelled"
    manager.stop(training, visitor=bob)
    # ...and resumes the interrupted one, which then is an ordinary run again.
    manager.resume(cut, visitor=bob)
    assert not manager.is_orphan(cut) and manager.owner_of(cut) == "anon:ann"
    # Rename and delete are not about a lost queue: they stay the owner's.
    with pytest.raises(NotAllowed, match="you cannot rename this run"):
        manager.rename(waiting, "bob's now", visitor=bob)
    with pytest.raises(NotAllowed, match="you cannot delete this run"):
        manager.delete(waiting, visitor=bob)
    # A run of this server is no orphan: Bob cannot stop Ann's.
    fresh = manager.submit(tiny(epochs=1), "ann fresh", visitor=manager.policy.visitor("anon:ann", "ann"))
    assert not manager.is_orphan(fresh)
    with pytest.raises(NotAllowed, match="you cannot stop this run"):
        manager.stop(fresh, visitor=bob)


def test_with_an_admin_who_can_log_in_only_the_owner_or_the_admin_does(restarted):
    manager, (cut, training, waiting) = restarted(Policy.from_settings("shared", {"admins": ["admin@example.org"]}, login=True))
    ann, bob = manager.policy.visitor("anon:ann", "ann"), manager.policy.visitor("anon:bob", "bob")
    for action, run_id in ((manager.stop, waiting), (manager.stop, training), (manager.resume, cut)):
        with pytest.raises(NotAllowed):
            action(run_id, visitor=bob)
    assert manager.view(waiting).status == "queued" and manager.store.read(cut).status == "interrupted"
    # Ann, back with the same browser (the same id), cancels and resumes her own.
    manager.stop(waiting, visitor=ann)
    manager.resume(cut, visitor=ann)
    assert manager.view(waiting).status == "cancelled" and manager.view(cut).status == "queued"


# ---- the Train page -----------------------------------------------------------------------------


@pytest.mark.parametrize("admins, auth, enabled", [(None, None, True), (["admin@example.org"], AUTH, False)])
def test_the_page_offers_resume_of_an_orphan_to_anyone_only_without_admins(tmp_path, tiny_data, monkeypatch, admins, auth, enabled):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    monkeypatch.chdir(ROOT)
    cut = cut_run(RunStore(tmp_path / "runs"), tiny_data)
    st.cache_resource.clear()  # a new server: the policy is read once per process
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["visitor_id"] = "anon:bob"
    if admins:
        at.secrets["studio"] = {"admins": admins}
        at.secrets["auth"] = auth
    run_app(at, "train")
    resume = at.button(key=f"resume-{cut}")
    assert resume.disabled is not enabled
    assert at.button(key="rename").disabled  # renaming stays the owner's either way
    st.cache_resource.clear()


def test_a_bad_identity_secret_is_one_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["studio"] = {"identity_secret": "short"}
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The Studio is not set up correctly: [studio] identity_secret must be a string of at "
                                           "least 32 characters, e.g. what `python -c 'import secrets; print(secrets.token_hex(32))'` prints."]
    st.cache_resource.clear()
