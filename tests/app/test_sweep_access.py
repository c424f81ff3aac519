"""Sweeps in shared mode: a sweep is its launcher's work, like a run. Its limits (and each
trial's, as a Train run's) refuse a launch before anything starts; only its owner or an
admin stops or deletes it, also against forged clicks; resume and the CLI keep the limits.
Ray is started once (the last test); every refusal here happens before it would start."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_json, process_start_time
from fmnist_core.commands.cli import main
from fmnist_core.formats.memory import machine_memory
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import LimitError, Limits, NotAllowed, Policy
from fmnist_core.store.run_store import RunStore, result_from
from fmnist_core.sweeps.sweep import _settle_sweep, _StopFlag
from fmnist_core.sweeps.sweep_launch import SweepLauncher
from fmnist_core.sweeps.sweep_store import SweepStore, this_host
from fmnist_core.training.run_manager import train_run
from tests.helpers.ray import wait_gone
from tests.helpers.runs import fake_finished_sweep, tiny

ANN, BOB = "anon:ann", "anon:bob"


def shown(message: str) -> str:
    """What the browser shows of a message the page escaped for Markdown."""
    return re.sub(r"\\(.)", r"\1", message)


def errors(at) -> list[str]:
    return [shown(e.value) for e in at.error]


def forge_click(button):
    """Click a disabled button as a hostile browser can: send the click anyway (Streamlit
    drops it; the launcher refuses it too, below, for any way round that)."""
    button.proto.disabled = False
    return button.click()


SHARED = Policy.from_settings("shared", {"admins": ["admin@example.org"]})


def running_sweep(runs: Path, sweep_id: str, owner: str, at_once: int = 2, trials: int = 4) -> str:
    """A sweep record as a live driver leaves it: this test process stands in for the
    driver (same pid and start time), so the store reads it as running."""
    atomic_write_json(runs / ".sweeps" / f"{sweep_id}.json", {
        "id": sweep_id, "name": f"{owner}'s sweep", "owner": owner, "status": "running", "created": "2026-01-01T00:00:00",
        "pid": os.getpid(), "started": process_start_time(os.getpid()), "host": this_host(),
        "space": [{"name": "lr", "kind": "grid", "values": [0.01, 0.05], "low": None, "high": None}],
        "base": TrainConfig(model="cnn_a").to_dict(),
        "options": {"trials": trials, "search": "random", "early_stop": "none", "max_concurrent": at_once, "address": "local"},
        "trial_runs": []})
    return sweep_id


def nothing_launched(runs: Path) -> bool:
    """No driver was started: the launcher opens a sweep's log before it starts one."""
    return not list((runs / ".sweeps").glob("*.log")) if (runs / ".sweeps").exists() else True


# ---- the limits ----------------------------------------------------------------------------------

def test_sweep_limits_live_in_the_limits_file():
    assert (Limits().trials_per_sweep, Limits().trials_at_once, Limits().sweeps_per_visitor) == (16, 2, 1)
    policy = Policy.from_settings("shared", {"limits": {"trials_per_sweep": 4, "trials_at_once": 1, "sweeps_per_visitor": 3}})
    assert (policy.limits.trials_per_sweep, policy.limits.trials_at_once, policy.limits.sweeps_per_visitor) == (4, 1, 3)
    with pytest.raises(UserError, match=r"trials_at_once = 0: use a whole number of at least 1"):
        Policy.from_settings("shared", {"limits": {"trials_at_once": 0}})


@pytest.mark.parametrize("limits, form, message", [
    ({"trials_per_sweep": 2}, {},
     "This sweep plans 3 trials: 1 over this server's 2 per sweep; vary fewer values or lower Trials. Nothing was started."),
    ({}, {"sw_concurrency": 3},
     "3 trials at once is 1 over this server's 2; lower Trials at once. Nothing was started."),
    ({}, {"sw_vary": ["batch_size"], "sw_values_batch_size_grid": "256, 2048"},
     "A trial with batch_size=2048: 2048 is over this server's limit; use at most 1024. Nothing was started."),
    ({}, {"sw_model": "vgg11", "sw_vary": ["width"], "sw_values_width_grid": "64, 192"},
     "A trial with width=192: 192 is over this server's limit; use at most 128. Nothing was started."),
    ({"memory_per_run_gb": 0.5}, {"sw_model": "vgg11"},
     "A trial: this run needs ~912 MB of memory and the limit is 0.5 GB per run: lower the batch size or the width, "
     "or pick a smaller model. Nothing was started."),
])
def test_a_sweep_over_a_limit_is_refused_before_anything_starts(shared_app, tmp_path, limits, form, message):
    at = shared_app(studio={"limits": limits}, visitor=ANN, page="sweep")
    assert any(c.value.startswith("Shared server: 0 of your 1 sweep and 0 of your 2 runs in use · up to ") for c in at.caption), [c.value for c in at.caption]
    for key, value in form.items():
        widget = at.multiselect(key=key) if key == "sw_vary" else at.selectbox(key=key) if key == "sw_model" else (
            at.number_input(key=key) if key == "sw_concurrency" else at.text_input(key=key))
        widget.set_value(value).run()
    assert not at.button(key="launch").disabled, errors(at)
    at.button(key="launch").click().run()
    assert not at.exception and errors(at) == [message]
    assert nothing_launched(tmp_path / "runs") and not (tmp_path / "runs" / ".sweeps").exists()


@pytest.mark.parametrize("limits, others, message", [
    ({}, [ANN], "You already have 1 sweep running, the most this server allows per visitor: wait for it to end or stop it. Nothing was started."),
    ({"sweeps_per_visitor": 2}, [ANN],  # that sweep trains 2 at once: 2 of Ann's 2 runs
     "This sweep trains 2 trials at once and you already have 2 runs queued or training: 2 over this server's 2 runs per "
     "visitor; lower Trials at once, or wait for a run to finish. Nothing was started."),
    ({"queue_length": 5}, [BOB, "local"],  # another visitor's sweep and one from the command line
     "This sweep trains 2 trials at once and 4 runs are queued or training: 1 over this server's queue of 5 runs; "
     "lower Trials at once, or try again later. Nothing was started."),
])
def test_running_sweeps_count_against_the_visitor_and_the_queue(shared_app, tmp_path, limits, others, message):
    for k, owner in enumerate(others):
        running_sweep(tmp_path / "runs", f"sweep-20260101-00000{k}-aaaa", owner)
    at = shared_app(studio={"limits": limits}, visitor=ANN, page="sweep")
    at.button(key="launch").click().run()
    assert not at.exception and errors(at) == [message]
    assert nothing_launched(tmp_path / "runs")


def test_a_running_sweep_takes_its_owners_places_on_train(shared_app, tmp_path):
    """Its trials at once are runs of its owner: Train counts them and refuses a third run."""
    running_sweep(tmp_path / "runs", "sweep-20260101-000000-aaaa", ANN, at_once=2)
    at = shared_app(studio={}, visitor=ANN)
    assert any(c.value.startswith("Shared server: 2 of your 2 runs in use") for c in at.caption)
    at.button(key="start").click().run()
    assert errors(at) == ["You already have 2 runs queued or training, the most this server allows per visitor: "
                          "wait for one to finish or stop one. Nothing was started."]
    assert RunStore(tmp_path / "runs").ids() == []


# ---- owners: stop and delete ---------------------------------------------------------------------

def test_only_the_owner_or_an_admin_stops_a_sweep_even_with_a_forged_click(shared_app, tmp_path):
    runs = tmp_path / "runs"
    sweep_id = running_sweep(runs, "sweep-20260101-000000-aaaa", ANN)
    stop_file = runs / ".sweeps" / f"{sweep_id}.stop"
    bob = shared_app(studio={"admins": ["admin@example.org"]}, visitor=BOB, page="sweep")
    button = bob.button(key=f"stop-{sweep_id}")
    assert button.disabled and "only they or an admin can stop or delete it" in button.help
    forge_click(button).run()
    assert not stop_file.exists()
    with pytest.raises(NotAllowed, match="you cannot stop this sweep: only the visitor who started it or an admin can"):
        SweepLauncher(RunStore(runs), SHARED).stop(sweep_id, visitor=SHARED.visitor(BOB, "bob"))
    assert not stop_file.exists()
    ann = shared_app(visitor=ANN, page="sweep")
    assert not ann.button(key=f"stop-{sweep_id}").disabled
    ann.button(key=f"stop-{sweep_id}").click().run()
    assert not ann.exception and not errors(ann) and stop_file.exists()


def test_a_command_line_sweep_is_stopped_only_by_an_admin_in_shared_mode(shared_app, tmp_path):
    runs = tmp_path / "runs"
    sweep_id = running_sweep(runs, "sweep-20260101-000000-aaaa", "local")
    anonymous = shared_app(studio={"admins": ["admin@example.org"]}, visitor=ANN, page="sweep")
    assert anonymous.button(key=f"stop-{sweep_id}").disabled
    admin = shared_app(user={"is_logged_in": True, "email": "admin@example.org"}, page="sweep")
    admin.button(key=f"stop-{sweep_id}").click().run()
    assert not errors(admin) and (runs / ".sweeps" / f"{sweep_id}.stop").exists()


def test_only_the_owner_deletes_a_sweep_and_its_trials(shared_app, tmp_path):
    runs = tmp_path / "runs"
    sweep_id, ids = fake_finished_sweep(runs)
    record = json.loads((runs / ".sweeps" / f"{sweep_id}.json").read_text())
    atomic_write_json(runs / ".sweeps" / f"{sweep_id}.json", {**record, "owner": ANN})
    for run_id in ids:
        info = json.loads((runs / run_id / "run.json").read_text())
        atomic_write_json(runs / run_id / "run.json", {**info, "owner": ANN})
    bob = shared_app(visitor=BOB, page="sweep")
    assert bob.button(key=f"delete-{sweep_id}").disabled
    forge_click(bob.button(key=f"delete-{sweep_id}")).run()
    assert "confirm_delete_sweep_yes" not in [b.key for b in bob.button]
    store = RunStore(runs)
    with pytest.raises(NotAllowed, match="you cannot delete this sweep: only the visitor who started it or an admin can"):
        SweepLauncher(store, SHARED).delete(sweep_id, visitor=SHARED.visitor(BOB, "bob"))
    assert store.ids() == sorted(ids, reverse=True) and SweepStore(store).ids() == [sweep_id]
    ann = shared_app(visitor=ANN, page="sweep")
    ann.button(key=f"delete-{sweep_id}").click().run()
    ann.button(key="confirm_delete_sweep_yes").click().run()
    assert not ann.exception and not errors(ann)
    assert store.ids() == [] and sorted(store.trashed_ids()) == ids and SweepStore(store).ids() == []
    assert (runs / ".trash" / ".sweeps" / f"{sweep_id}.json").is_file()


# ---- resume keeps the queue limits, and a refusal changes nothing (finding 6) --------------------

def test_a_resume_over_the_queue_limit_is_refused_and_changes_nothing(held_manager, tmp_path, tiny_data):
    policy = SHARED
    ann = policy.visitor(ANN, "ann")
    store = RunStore(tmp_path / "runs")
    config = tiny(epochs=2)
    stopped = store.create(config, owner=ANN).name
    stop = threading.Event()

    class StopAfterFirstEpoch:
        def on_epoch_end(self, record):
            stop.set()

    assert train_run(store, stopped, config, callbacks=[StopAfterFirstEpoch()], stop=stop, data=tiny_data)["status"] == "stopped"
    folder = store.root / stopped
    before = {name: (folder / name).read_bytes() for name in ("owner.json", "history.jsonl", "result.json")}
    manager = held_manager(policy)
    manager.submit(tiny(), visitor=ann)
    manager.submit(tiny(), visitor=ann)
    with pytest.raises(LimitError, match="you already have 2 runs queued or training, the most this server allows per visitor"):
        manager.resume(stopped, visitor=ann)
    with pytest.raises(LimitError, match="you already have 2 runs queued or training"):  # an admin resumes it as Ann's
        manager.resume(stopped, visitor=policy.visitor("admin@example.org", "admin"))
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert store.read(stopped).status == "stopped" and stopped not in manager.active_ids()


# ---- the command line: the app's memory check ----------------------------------------------------

@pytest.mark.skipif((machine_memory() or 0) < 1e9 or (machine_memory() or 0) > 70e9,
                    reason="the largest form (~76.6 GB) fits this machine's memory")
def test_cli_train_refuses_a_run_bigger_than_the_machine(bounded_memory, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "vgg11", "--width", "256", "--batch-size", "8192", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: this run needs ~76.6 GB of memory and this machine has {machine_memory() / 1e9:.0f} GB in all: "
                   "lower the batch size or the width, or pick a smaller model")
    assert not out.exists()


@pytest.mark.skipif((machine_memory() or 0) < 1e9 or (machine_memory() or 0) > 70e9,
                    reason="the largest form (~76.6 GB) fits this machine's memory")
@pytest.mark.timeout(60)  # a missing check starts Ray under the memory cap, which then hangs
def test_cli_sweep_refuses_a_trial_bigger_than_the_machine(bounded_memory, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    assert main(["sweep", "--model", "vgg11", "--width", "256", "--grid", "batch_size=256,8192"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a trial with batch_size=8192: this run needs ~76.6 GB of memory") and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


# ---- sweep records -------------------------------------------------------------------------------

def test_a_reused_pid_does_not_keep_a_dead_sweep_running(tmp_path):
    """The record's pid is alive (it is this process) but started at another time: another
    process took the number after the driver died."""
    runs = tmp_path / "runs"
    sweep_id = running_sweep(runs, "sweep-20260101-000000-aaaa", ANN)
    sweeps = SweepStore(RunStore(runs))
    assert sweeps.read(sweep_id).status == "running"
    record = sweeps.raw(sweep_id)
    sweeps.write(sweep_id, {**record, "started": record["started"] - 1000})
    assert sweeps.read(sweep_id).status == "interrupted"


def test_a_trial_created_but_not_started_reads_starting_not_interrupted(tmp_path):
    """A sweep's trial, at each moment in its Ray worker, written as the worker writes it:
    its folder is created, then the worker loads the data and builds the model (seconds on
    a busy machine), then it trains. Until the first batch it must read "starting" (issue 23:
    it read "interrupted 0/1" while Ray's workers were starting); only its worker's death
    makes it interrupted."""
    store = RunStore(tmp_path / "runs")
    run_id = "sweep-20260101-000000-aaaa-t01"
    folder = store.create(tiny(), run_id=run_id, owner=ANN, sweep="sweep-20260101-000000-aaaa")
    worker = os.getppid()  # a live process other than this one stands in for the Ray worker
    claim = {"pid": worker, "started": process_start_time(worker)}
    atomic_write_json(folder / "owner.json", {**claim, "starting": True})  # created, preparing
    assert store.read(run_id).status == "starting"
    sweeps = SweepStore(store)
    sweeps.write("sweep-20260101-000000-aaaa", {"status": "finished", "space": [], "trial_runs": [run_id]})
    with pytest.raises(UserError, match="still training"):  # a starting trial is not deleted under its worker
        sweeps.trash("sweep-20260101-000000-aaaa")
    atomic_write_json(folder / "owner.json", {**claim, "starting": True, "started": claim["started"] - 1000})  # its worker died
    assert store.read(run_id).status == "interrupted"
    atomic_write_json(folder / "owner.json", claim)  # the first batch: RunWriter.on_run_start
    assert store.read(run_id).status == "running"
    store.write_result(run_id, result_from("finished", "", [], 1.0, None))
    assert store.read(run_id).status == "finished"
    # What the trial's worker does when Tune starts it: the folder is claimed from the moment it is listed.
    from fmnist_core.sweeps.sweep import create_trial_run

    context = {"sweep": "sweep-20260101-000000-bbbb", "owner": ANN}
    made = create_trial_run(store, tiny(), context, "1839e_00000")
    trial = store.read(made)
    assert (made, trial.status, trial.sweep, trial.owner) == ("sweep-20260101-000000-bbbb-t01", "starting", "sweep-20260101-000000-bbbb", ANN)


def test_a_sweep_whose_only_trial_failed_reads_failed(tmp_path):
    runs = tmp_path / "runs"
    sweep_id = running_sweep(runs, "sweep-20260101-000000-aaaa", ANN)
    store = RunStore(runs)
    run_id = store.create(tiny(), run_id=f"{sweep_id}-t01", owner=ANN, sweep=sweep_id).name
    store.write_result(run_id, result_from("failed", "RuntimeError: the data could not be read", [], 0.0, None))
    settled = _settle_sweep(SweepStore(store), sweep_id, "finished", "", 3.0)  # as the driver does when Tune returns
    record = SweepStore(store).read(sweep_id)
    assert record.status == "failed" and settled[-1] == "failed"  # the record, and what `sweep` prints and exits with
    assert record.message == "every trial failed; the first: RuntimeError: the data could not be read"


def test_a_sweep_stopped_because_its_app_died_does_not_say_by_request(monkeypatch, tmp_path):
    monkeypatch.setattr(_StopFlag, "stop_file", tmp_path / "none.stop")
    monkeypatch.setenv("FMNIST_SWEEP_PARENT_PID", str(os.getppid() + 1))  # not our parent: the app is gone
    assert _StopFlag.reason() == "the Studio server that launched it stopped; finished epochs are kept"
    (tmp_path / "none.stop").touch()
    assert _StopFlag.reason() == "stopped by request; finished epochs are kept"
    monkeypatch.setenv("FMNIST_SWEEP_PARENT_PID", str(os.getppid()))
    (tmp_path / "none.stop").unlink()
    assert _StopFlag.reason() == "stopped by Ctrl-C or SIGTERM; finished epochs are kept"


# ---- one real sweep: launched from the page, owned by its visitor, a trial stopped on Train -------

@pytest.mark.ray
def test_a_launched_sweep_is_its_visitors_and_a_second_click_starts_no_second_ray(shared_app, tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))
    runs = tmp_path / "runs"
    at = shared_app(studio={}, visitor=ANN, page="sweep")
    at.number_input(key="sw_epochs_custom").set_value(200).run()
    at.text_input(key="sw_values_lr_grid").set_value("0.01").run()
    at.number_input(key="sw_concurrency").set_value(1).run()
    at.text_input(key="sw_name").set_value("-n --trials 5").run()  # starts with "-": a value, not an option
    at.button(key="launch").click().run()
    assert not errors(at)
    at.button(key="launch").click().run()  # at once: the first has not written its record yet
    assert errors(at) == ["You already have 1 sweep running, the most this server allows per visitor: wait for it to end or stop it. "
                          "Nothing was started."]
    assert len(list((runs / ".sweeps").glob("*.log"))) == 1  # one driver, one Ray
    store, sweeps = RunStore(runs), SweepStore(RunStore(runs))
    deadline = time.time() + 180
    while not (store.ids() and store.read(store.ids()[0]).history):
        assert time.time() < deadline, (list((runs / ".sweeps").glob("*.log"))[0].read_text()[-2000:])
        time.sleep(0.5)
    (sweep_id,) = sweeps.ids()
    record, trial = sweeps.read(sweep_id), store.read(store.ids()[0])
    assert (record.owner, record.name, record.status) == (ANN, "-n --trials 5", "running")
    assert trial.owner == ANN and trial.sweep == sweep_id and trial.status == "running"
    # Its owner stops the trial on Train (it trains in a Ray worker of the driver).
    train = shared_app(visitor=ANN)
    assert train.session_state["selected_run"] == trial.id  # the only run, and active: shown first
    train.button(key=f"stop-{trial.id}").click().run()
    assert not errors(train)
    deadline = time.time() + 60
    while sweeps.read(sweep_id).status == "running":
        assert time.time() < deadline, "the sweep did not end after its only trial was stopped"
        time.sleep(0.5)
    trial = store.read(trial.id)
    assert trial.status == "stopped" and "stopped by request" in trial.result["message"] and len(trial.history) < 200
    assert not (trial.path / "stop.json").exists()
    assert wait_gone(sweeps.raw(sweep_id)["ray_session"]) == []  # the driver took its Ray down
