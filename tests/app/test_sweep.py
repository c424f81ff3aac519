"""Sweeps on Ray Tune: the space's refusals, then real sweeps on a local Ray and on a
Ray cluster started here, each trial an ordinary run in the store (tiny data, 1 thread)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmnist_core.commands.cli import main
from fmnist_core.store.catalog import EntryKey
from fmnist_core.store.run_store import RunStore
from fmnist_core.sweeps.sweep_store import SweepStore
from tests.helpers.pages import picker
from tests.helpers.paths import APP, ROOT
from tests.helpers.ray import wait_gone
from tests.helpers.runs import fake_finished_sweep
from tests.helpers.server import free_port

TINY = ["--batch-size", "256", "--epochs", "1", "--cpus-per-trial", "1"]


def sweep_env(tiny_dir: Path, runs: Path, **extra) -> dict:
    return {**os.environ, "FMNIST_DATA_DIR": str(tiny_dir), "FMNIST_RUNS_DIR": str(runs), "PYTHONPATH": str(ROOT), **extra}


def run_sweep_cli(args: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m fmnist_core sweep ...` as a user runs it, from the checkout."""
    return subprocess.run([sys.executable, "-m", "fmnist_core", "sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---- refusals: one line, exit 2, nothing created, Ray never started ------------------------------

@pytest.mark.parametrize("args, words", [
    ([], "search space is empty"),
    (["--grid", "lr=0.01,20"], "--grid lr: 20 is out of range"),
    (["--grid", "learning_rate=0.1"], "unknown hyperparameter 'learning_rate'"),
    (["--grid", "threads=1,2"], "'threads' cannot vary within a sweep"),
    (["--sample", "lr=loguniform:0:0.3"], "--sample lr: 0 is out of range"),
    (["--sample", "lr=normal:0:1"], "unknown distribution 'normal'"),
    (["--sample", "batch_size=uniform:32:64"], "use batch_size=randint"),
    (["--sample", "batch_size=randint:64:32"], "LOW (64) must be below HIGH (32)"),
    (["--grid", "nesterov=true,false", "--optimizer", "adam"], "Nesterov momentum needs optimizer 'sgd'"),
    (["--grid", "lr=0.1", "--sample", "lr=uniform:0.1:0.2"], "'lr' is varied twice"),
    (["--search", "optuna", "--grid", "lr=0.1,0.2"], "give them as --sample lr=choice"),
    (["--grid", "lr=0.1,0.2", "--cpus-per-trial", "0"], "--cpus-per-trial: 0 is out of range"),
    (["--grid", "lr=0.1,0.2", "--address", "127.0.0.1:1"], "no Ray cluster answers there"),
    (["--grid", "lr=0.1,0.2", "--address", "nonsense"], "give the head node as HOST:PORT"),
    (["--model", "mlp4", "--grid", "width=32,64"], "--grid width: mlp4 has no width setting, so every trial would ignore it"),
    (["--grid", "model=cnn_c,vgg11", "--sample", "width=randint:16:64"], "--sample width: cnn_c has no width setting"),
])
def test_bad_input_is_refused_in_one_line_before_anything_starts(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    started = time.perf_counter()
    assert main(["sweep", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert time.perf_counter() - started < 10  # an unreachable address fails fast, not after Ray's retries
    assert not (tmp_path / "runs").exists()
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


@pytest.mark.parametrize("args, reason", [
    # a spec the page's form accepts (its server's limits) that this machine's memory refuses in the driver
    (["--model", "vgg11", "--width", "256", "--grid", "batch_size=256,8192"], "a trial with batch_size=8192: this run needs ~76.6 GB of memory"),
    (["--grid", "lr=0.01,20"], "--grid lr: 20 is out of range"),  # refused while the driver reads its command line
])
def test_a_sweep_the_page_launched_that_fails_to_start_stays_listed_as_failed(args, reason, bounded_memory, tmp_path, monkeypatch, capsys):
    """The page picks the sweep's id (--id) and lists it at once; a driver that refuses to
    start must leave it listed as failed with its one-line reason (issue 23: it vanished)."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(runs))
    monkeypatch.setenv("FMNIST_SWEEP_OWNER", "anon:ann")
    sweep_id = "sweep-20260101-000000-fail"
    assert main(["sweep", *args, f"--id={sweep_id}", "--name=too big"]) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1, err
    sweeps = SweepStore(RunStore(runs))
    assert sweeps.ids() == [sweep_id]
    record = sweeps.read(sweep_id)
    assert (record.status, record.message, record.name, record.owner, record.problems) == (
        "failed", err.removeprefix("error: "), "too big", "anon:ann", [])
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


# ---- a real sweep on a local Ray started by the driver ---------------------------------------------

@pytest.mark.ray
def test_four_trial_grid_on_local_ray(tiny_dir, tmp_path):
    """4 trials, one of which diverges: 4 runs with histories, checkpoints and results, the
    sweep record, the best trial reported, and no Ray process left behind."""
    runs = tmp_path / "runs"
    done = run_sweep_cli(["--model", "mlp4", "--batch-size", "16", "--epochs", "1", "--momentum", "0.9",
                          "--grid", "lr=0.01,0.05,0.1,10", "--name", "four", "--json"], sweep_env(tiny_dir, runs))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["trials"] == 4 and summary["status"] == "finished"
    assert summary["statuses"] == {"diverged": 1, "finished": 3}

    store = RunStore(runs)
    trials = [store.read(rid) for rid in store.ids()]
    assert len(trials) == 4 and {t.sweep for t in trials} == {summary["sweep"]}
    by_lr = {t.config["lr"]: t for t in trials}
    assert by_lr[10.0].status == "diverged" and "too high" in by_lr[10.0].result["message"]
    for lr in (0.01, 0.05, 0.1):
        run = by_lr[lr]
        assert run.status == "finished" and len(run.history) == 1 and run.weights is not None
        assert run.config["threads"] == 1 and run.name.startswith("four: lr=")
    best = max((by_lr[lr] for lr in (0.01, 0.05, 0.1)), key=lambda r: r.history[0]["test_accuracy"])
    assert summary["best"]["run"] == best.id and summary["best"]["config"] == {"lr": best.config["lr"]}
    assert summary["best"]["test_accuracy"] == pytest.approx(best.history[0]["test_accuracy"])
    assert summary["best"]["test_accuracy"] > 30  # learnt something on the 10 tiny classes

    sweeps = SweepStore(store)
    record = sweeps.read(summary["sweep"])
    assert record.status == "finished" and record.name == "four" and record.best_run == best.id
    assert sorted(record.trial_runs) == sorted(t.id for t in trials) and record.varied == ["lr"]
    assert record.space[0]["values"] == [0.01, 0.05, 0.1, 10.0]
    assert wait_gone(sweeps.raw(summary["sweep"])["ray_session"]) == []


@pytest.mark.ray
def test_a_sweep_read_while_it_runs_never_shows_a_trial_as_interrupted(tiny_dir, tmp_path):
    """Issue 23, on a real local Ray: the store is read every few milliseconds while a sweep
    launched as the page does (--id) starts and runs. Its record goes starting -> running ->
    finished; its trials read starting while their workers load the data and build the
    model, then running, then finished: never interrupted (they read "interrupted 0/1")."""
    runs, sweep_id = tmp_path / "runs", "sweep-20260101-000000-look"
    store = RunStore(runs)
    sweeps = SweepStore(store)
    driver = subprocess.Popen([sys.executable, "-m", "fmnist_core", "sweep", *TINY, "--model", "cnn_a", "--grid", "lr=0.01,0.05",
                               "--max-concurrent", "2", f"--id={sweep_id}"], cwd=ROOT,
                              # a small object store (Ray's default maps 30% of the memory): runs under `prlimit --as`
                              env=sweep_env(tiny_dir, runs, RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION="0.04", MALLOC_ARENA_MAX="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sweep_seen, trials_seen = [], {}
    deadline = time.time() + 240
    while driver.poll() is None and time.time() < deadline:
        if sweeps.path(sweep_id).exists() and (status := sweeps.read(sweep_id).status) not in sweep_seen[-1:]:
            sweep_seen.append(status)
        for run in store.list():
            if run.status not in trials_seen.setdefault(run.id, [])[-1:]:
                trials_seen[run.id].append(run.status)
        time.sleep(0.02)
    output = driver.communicate(timeout=max(1, deadline - time.time()))[0]
    assert driver.returncode == 0, output[-3000:]
    sweep_seen.append(sweeps.read(sweep_id).status)
    assert len(trials_seen) == 2 and all("interrupted" not in seen for seen in trials_seen.values()), trials_seen
    assert [s for i, s in enumerate(sweep_seen) if s not in sweep_seen[:i]] == ["starting", "running", "finished"], sweep_seen
    assert all(store.read(run_id).status == "finished" for run_id in trials_seen), trials_seen
    assert any(seen[0] == "starting" for seen in trials_seen.values()), trials_seen  # caught in the act at least once


@pytest.mark.ray
def test_asha_stops_the_clearly_bad_trial_and_keeps_its_epoch(tiny_dir, tmp_path):
    """One trial at a useful learning rate, one that cannot learn in time: ASHA stops the
    second after its grace epoch; the run keeps that epoch and says why it stopped."""
    runs = tmp_path / "runs"
    done = run_sweep_cli(["--model", "cnn_a", "--batch-size", "256", "--epochs", "4", "--grid", "lr=0.05,0.0000001",
                          "--early-stop", "asha", "--grace-period", "1", "--max-concurrent", "1", "--json"],
                         sweep_env(tiny_dir, runs))
    assert done.returncode == 0, done.stderr[-3000:]
    store = RunStore(runs)
    by_lr = {r.config["lr"]: r for r in store.list()}
    good, bad = by_lr[0.05], by_lr[1e-7]
    assert good.status == "finished" and len(good.history) == 4
    assert bad.status == "stopped" and "ASHA" in bad.result["message"]
    assert len(bad.history) < 4 and bad.weights is not None
    assert bad.history[0]["test_accuracy"] < good.history[0]["test_accuracy"]


@pytest.mark.ray
def test_a_dead_worker_and_ctrl_c_leave_honest_runs_and_no_processes(tiny_dir, tmp_path):
    """Kill one trial's worker process (as the OOM killer would), then press Ctrl-C: the
    killed trial is failed, the other stopped, both with their finished epochs, the sweep
    is stopped, nothing is shown as running and no Ray process is left."""
    runs = tmp_path / "runs"
    driver = subprocess.Popen([sys.executable, "-m", "fmnist_core", "sweep", "--model", "cnn_a", "--batch-size", "256",
                               "--epochs", "200", "--grid", "lr=0.01,0.02", "--max-concurrent", "2"],
                              cwd=ROOT, env=sweep_env(tiny_dir, runs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = RunStore(runs)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            trials = store.list()
            if len(trials) == 2 and all(len(t.history) >= 2 for t in trials):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the two trials did not train two epochs each in time")
        victim, survivor = trials
        assert victim.status == "running" and survivor.status == "running"
        os.kill(json.loads((victim.path / "owner.json").read_text())["pid"], signal.SIGKILL)
        time.sleep(3)
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    victim, survivor = store.read(victim.id), store.read(survivor.id)
    assert victim.status == "failed" and "worker" in victim.result["message"] and len(victim.history) >= 2
    assert survivor.status == "stopped" and "stopped with the sweep" in survivor.result["message"] and len(survivor.history) >= 2
    sweeps = SweepStore(store)
    sweep_id = sweeps.ids()[0]
    assert sweeps.read(sweep_id).status == "stopped"
    assert wait_gone(sweeps.raw(sweep_id)["ray_session"]) == []


# ---- a real Ray cluster on this machine -------------------------------------------------------------

@pytest.mark.ray
def test_sweep_on_a_ray_cluster_started_here(tiny_dir, tmp_path):
    """`ray start --head` with token authentication (Ray >= 2.59 turns it on), then
    `sweep --address` with only the token in the environment: the driver authenticates,
    the trials write into the store given to the sweep, and the cluster is stopped."""
    port = free_port()
    token = secrets.token_hex(16)
    temp_dir = Path("/tmp") / f"ray-{secrets.token_hex(3)}"  # short: Ray's socket paths have a length limit
    ray_bin = Path(sys.executable).with_name("ray")
    head_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard", "false",
                             "--temp-dir", str(temp_dir), "--block", "--disable-usage-stats"],
                            cwd=ROOT, env={**head_env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        runs = tmp_path / "runs"
        env = sweep_env(tiny_dir, runs, RAY_AUTH_TOKEN=token)
        env.pop("RAY_AUTH_MODE", None)
        deadline = time.time() + 60
        while True:  # the head listens a few seconds after start
            done = run_sweep_cli([*TINY, "--model", "cnn_a", "--grid", "lr=0.01,0.05", "--address", f"127.0.0.1:{port}", "--json"], env)
            if done.returncode != 2 or "no Ray cluster answers" not in done.stderr or time.time() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        store = RunStore(runs)

        # The wrong token: one line, exit 2, nothing written.
        refused = run_sweep_cli([*TINY, "--grid", "lr=0.01,0.05", "--address", f"127.0.0.1:{port}"],
                                sweep_env(tiny_dir, tmp_path / "other", RAY_AUTH_TOKEN="not-the-token"))
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: --address"), refused.stderr[-2000:]
        assert "token" in refused.stderr.strip().splitlines()[-1] and not (tmp_path / "other").exists()

        assert summary["trials"] == 2 and len(store.ids()) == 2
        assert all(r.status == "finished" and len(r.history) == 1 and r.weights is not None for r in store.list())
        record = SweepStore(store).read(summary["sweep"])
        assert record.options["address"] == f"127.0.0.1:{port}" and record.status == "finished"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its cluster on SIGTERM (not `ray stop`: that is machine-wide)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
    assert wait_gone(str(temp_dir)) == []


@pytest.mark.ray
def test_optuna_search_samples_the_space(tiny_dir, tmp_path):
    """The model-based searcher (Optuna's TPE through Ray Tune) draws values inside the range."""
    runs = tmp_path / "runs"
    done = run_sweep_cli([*TINY, "--model", "cnn_a", "--sample", "lr=loguniform:0.005:0.2", "--sample", "optimizer=choice:sgd,adam",
                          "--search", "optuna", "--trials", "2", "--json"], sweep_env(tiny_dir, runs))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    trials = RunStore(runs).list()
    assert summary["trials"] == 2 and all(r.status == "finished" for r in trials)
    assert all(0.005 <= r.config["lr"] <= 0.2 and r.config["optimizer"] in ("sgd", "adam") for r in trials)
    assert set(summary["best"]["config"]) == {"lr", "optimizer"}
    assert SweepStore(RunStore(runs)).read(summary["sweep"]).options["search"] == "optuna"


# ---- the Sweep page (AppTest) ---------------------------------------------------------------------

def test_sweep_page_refuses_what_the_cli_refuses(app, tmp_path):
    at = app("sweep")
    offered = at.multiselect(key="sw_vary").options  # labels; only settings a sweep may vary
    assert "Threads" not in offered and "Device" not in offered and "Learning rate" in offered
    assert not at.button(key="launch").disabled  # the defaults are a valid sweep
    at.text_input(key="sw_values_lr_grid").set_value("0.01, 20").run()
    assert at.button(key="launch").disabled
    assert any("--grid lr: 20 is out of range" in e.value for e in at.error), [e.value for e in at.error]
    at.selectbox(key="sw_how_lr").set_value("loguniform").run()
    at.text_input(key="sw_values_lr_loguniform").set_value("0:0.3").run()
    assert at.button(key="launch").disabled and any("lr: 0 is out of range" in e.value for e in at.error)
    at.multiselect(key="sw_vary").set_value([]).run()
    assert at.button(key="launch").disabled and any("search space is empty" in e.value for e in at.error)
    at.multiselect(key="sw_vary").set_value(["nesterov"]).run()
    at.selectbox(key="sw_preset").set_value("report_cnn_c").run()  # nesterov=true with SGD is fine ...
    assert not at.button(key="launch").disabled, [e.value for e in at.error]
    assert not at.exception
    assert not (tmp_path / "runs").exists()  # nothing launched, nothing written


def test_sweep_page_finds_a_sweep_and_links_its_best_trial(app, tmp_path):
    sweep_id, ids = fake_finished_sweep(tmp_path / "runs")
    at = app("sweep")
    assert picker(at).value == sweep_id
    table = next(f.value for f in at.dataframe if "best_test_accuracy" in f.value.columns)
    assert table["run"].tolist() == ids and table["status"].tolist() == ["finished"] * 3
    assert table["lr"].tolist() == [0.01, 0.05, 0.1] and table["epoch"].tolist() == ["1/1"] * 3
    assert any("84.50%" in s.value and "lr = 0.05" in s.value for s in at.success)
    links = {b.proto.label: b.proto.url for b in at.get("link_button")}
    assert links["Train this config"] == "train?lr=0.05&epochs=1&optimizer=adam&model=cnn_a" or (
        "lr=0.05" in links["Train this config"] and "model=cnn_a" in links["Train this config"] and "optimizer=adam" in links["Train this config"])
    assert links["Compare these"] == f"compare?runs={ids[1]}%2C{ids[2]}%2C{ids[0]}"  # best first
    assert not at.exception


def live_sweep_record(runs: Path, sweep_id: str, status: str, name: str = "", trial_runs=()) -> None:
    """A sweep record as its driver writes it; this test process stands in for the live driver."""
    from fmnist_core.base.files import atomic_write_json, process_start_time
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.sweeps.sweep_store import this_host

    atomic_write_json(runs / ".sweeps" / f"{sweep_id}.json", {
        "id": sweep_id, "name": name or sweep_id, "status": status, "created": "2026-01-02T00:00:00",
        "pid": os.getpid(), "started": process_start_time(os.getpid()), "host": this_host(),
        "space": [{"name": "lr", "kind": "grid", "values": [0.01, 0.05], "low": None, "high": None}],
        "base": TrainConfig(model="cnn_a", epochs=1).to_dict(),
        "options": {"trials": 2, "search": "random", "early_stop": "none", "address": "local"}, "trial_runs": list(trial_runs)})


def browser_label(box, before: tuple[str, str] | None) -> tuple[str, str]:
    """(widget id, label) that a browser shows for a selectbox after this run: a widget new to
    it shows its default option; one it has shown keeps the label it shows unless the server
    sends a value (set_value). Streamlit does not refresh a kept widget's label otherwise
    (streamlit/streamlit#13788)."""
    proto = box.proto
    if before is None or before[0] != proto.id:
        return proto.id, proto.options[proto.default]
    return (proto.id, proto.raw_value) if proto.set_value else before


def test_the_sweep_picker_says_each_sweeps_status_as_it_changes(app, tmp_path):
    """Issue 23: the picker said "starting" for a whole sweep. Its label must follow the
    record (starting, running, finished) without losing the sweep the visitor chose."""
    runs = tmp_path / "runs"
    older, _ = fake_finished_sweep(runs)
    sweep_id = "sweep-20260102-000000-beef"
    live_sweep_record(runs, sweep_id, "starting")
    at = app("sweep")
    assert picker(at).value == sweep_id  # the newest
    seen = browser_label(picker(at), None)
    assert seen[1].split(" · ")[1] == "starting"
    for status in ("running", "finished"):
        live_sweep_record(runs, sweep_id, status)
        at.run()  # what the page's poll does when the status changes
        seen = browser_label(picker(at), seen)
        assert seen[1].split(" · ")[1] == status and picker(at).value == sweep_id
    picker(at).set_value(older).run()  # the visitor looks at the older sweep ...
    seen = browser_label(picker(at), seen)
    live_sweep_record(runs, sweep_id, "failed")  # ... while the other one's label changes
    at.run()
    assert picker(at).value == older and browser_label(picker(at), seen)[1] == f"page sweep · finished · {older}"
    assert not at.exception


def test_a_long_sweep_name_and_its_trials_run_ids_are_shown_whole(app, tmp_path):
    """Issue 23: names were cut to "sweep-2026…". The picker cuts a long label to its width, so the
    sweep's name is written out in full under it; the trials' run ids get a wide column."""
    runs = tmp_path / "runs"
    _, ids = fake_finished_sweep(runs)
    sweep_id = "sweep-20260101-000000-abcd"
    name = "lr on cnn_a for the report's table 3, *the* long evening run [draft 2] with weight decay off"
    values = json.loads((runs / ".sweeps" / f"{sweep_id}.json").read_text())
    (runs / ".sweeps" / f"{sweep_id}.json").write_text(json.dumps({**values, "name": name}))
    at = app("sweep")
    captions = [re.sub(r"\\(.)", r"\1", c.value) for c in at.caption]  # as the browser shows escaped text
    assert any(c.startswith(f"{name} · ") and sweep_id in c for c in captions), captions
    table = next(f for f in at.dataframe if "best_test_accuracy" in f.value.columns)
    assert json.loads(table.proto.columns)["run"]["width"] >= 7 * max(map(len, ids))  # ~7 px a character: whole
    assert table.value["run"].tolist() == ids
    assert not at.exception


def test_trial_figures_are_rounded_and_missing_ones_show_a_dash(app, tmp_path):
    """Issue 23: best accuracy and seconds read "None" before a trial's first epoch. A missing
    figure shows as "–"; accuracy has two decimals, seconds are whole."""
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.store.run_store import result_from
    from fmnist_core.sweeps.sweep import create_trial_run

    runs = tmp_path / "runs"
    store, sweep_id = RunStore(runs), "sweep-20260102-000000-beef"
    done = store.create(TrainConfig(model="cnn_a", lr=0.01, epochs=1), run_id=f"{sweep_id}-t01", sweep=sweep_id).name
    history = [{"epoch": 1, "train_loss": 1.0, "train_loss_sum": 3.0, "train_accuracy": 80.0, "test_loss": 0.9,
                "test_accuracy": 84.5678, "seconds": 12.6, "images_per_s": 300.0, "lr": 0.01, "elapsed_s": 12.6}]
    (runs / done / "history.jsonl").write_text(json.dumps(history[0]) + "\n")
    store.write_result(done, result_from("finished", "", history, 12.6, 2174))
    waiting = create_trial_run(store, TrainConfig(model="cnn_a", lr=0.05, epochs=1), {"sweep": sweep_id, "owner": "local"}, "1839e_00001")
    live_sweep_record(runs, sweep_id, "running", trial_runs=[done, waiting])
    at = app("sweep")
    table = next(f for f in at.dataframe if "best_test_accuracy" in f.value.columns)
    assert table.proto.placeholder == "–"  # what a missing figure shows (Streamlit's own: "None")
    rows = table.value.set_index("run")
    assert (rows.loc[done, "best_test_accuracy"], rows.loc[done, "seconds"]) == (84.57, 13.0)
    assert (rows.loc[waiting, "status"], rows.loc[waiting, "epoch"]) == ("starting", "0/1")
    assert rows.loc[waiting, ["best_test_accuracy", "seconds"]].isna().all()
    assert not at.exception


def test_the_page_lists_a_sweep_that_failed_to_start_with_its_reason(app, tmp_path, monkeypatch, capsys):
    """Issue 23: a sweep whose driver refused to start vanished from the list. The driver the
    page launched records why; the page lists it as failed and says why."""
    sweep_id = "sweep-20260101-000000-fail"
    assert main(["sweep", "--grid", "lr=0.01,20", f"--id={sweep_id}"]) == 2
    reason = capsys.readouterr().err.strip().removeprefix("error: ")
    at = app("sweep")
    assert picker(at).value == sweep_id and picker(at).proto.options[0].startswith(f"{sweep_id} · failed")
    assert [re.sub(r"\\(.)", r"\1", e.value) for e in at.error] == [reason]
    assert not any("Delete" in b.label for b in at.button if b.disabled)  # it can be deleted
    assert not at.exception


def test_compare_preselects_the_runs_in_its_link(app, tmp_path):
    _, ids = fake_finished_sweep(tmp_path / "runs")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["runs"] = f"{ids[2]},{ids[0]}"
    at.run()
    at.switch_page("app_pages/compare.py").run()
    # Compare lists runs, shipped models and Table 1 rows; a run of this machine is "run:<id>"
    assert at.multiselect(key="compare_runs").value == [EntryKey.of("run", ids[2]), EntryKey.of("run", ids[0])]
    assert not at.exception


@pytest.mark.ray
def test_reproduce_a_study_in_parallel_as_a_sweep(tiny_dir, tmp_path):
    """`reproduce --study optimizers --parallel 2`: the study's rows run as one sweep (a grid
    over the rows' configs), and the table is written from their runs as before."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "fmnist_core", "reproduce", "--study", "optimizers", "--epochs", "1", "--parallel", "2",
                           "--results", str(results)], cwd=ROOT, env=sweep_env(tiny_dir, runs), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    store = RunStore(runs)
    trials = store.list()
    assert sorted(r.name for r in trials) == ["optimizers: Adam (lr 0.001)", "optimizers: RMSprop (lr 0.001)", "optimizers: SGD (lr 0.01, momentum 0.9)"]
    assert all(r.status == "finished" and r.sweep and r.config["threads"] == 1 and r.config["batch_size"] == 32 for r in trials)
    assert {r.config["optimizer"] for r in trials} == {"sgd", "adam", "rmsprop"}
    table = (results / "study_optimizers.md").read_text()
    assert table.count("| finished |") == 3, table
    record = SweepStore(store).read(trials[0].sweep)
    assert record.status == "finished" and record.options["rows"] == 3 and record.options["max_concurrent"] == 2


@pytest.mark.ray
def test_a_sweep_the_app_launched_ends_when_the_app_dies(tiny_dir, tmp_path):
    """The app (here a bare process using the page's launcher) is killed with SIGKILL while
    its sweep trains: the driver notices, stops its trials, settles their runs and takes
    Ray down, so no process is left and no run shows as running."""
    runs = tmp_path / "runs"
    code = ("import time; from fmnist_core.store.run_store import RunStore; from fmnist_core.sweeps.sweep_launch import SweepLauncher; "
            "from fmnist_core.sweeps.sweep import SweepSpec; from fmnist_core.modeling.config import TrainConfig; from fmnist_core.sweeps.sweep_space import parse_grid; "
            f"SweepLauncher(RunStore({str(runs)!r})).launch('sweep-orphan-test', SweepSpec("
            "TrainConfig(model='cnn_a', batch_size=256, epochs=200), [parse_grid('lr=0.01,0.02')])); time.sleep(600)")
    app_process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=sweep_env(tiny_dir, runs))
    store, sweeps = RunStore(runs), SweepStore(RunStore(runs))
    try:
        deadline = time.time() + 120
        while not (len(store.ids()) == 2 and all(len(r.history) >= 1 for r in store.list())):
            assert time.time() < deadline, "the trials did not start in time"
            time.sleep(0.5)
    finally:
        app_process.kill()
        app_process.wait()
    driver = sweeps.raw("sweep-orphan-test")["pid"]
    deadline = time.time() + 60
    while Path(f"/proc/{driver}").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{driver}").exists(), "the sweep driver outlived the app"
    record = sweeps.read("sweep-orphan-test")
    assert record.status == "stopped" and record.message == "the Studio server that launched it stopped; finished epochs are kept"
    assert all(r.status == "stopped" and r.history for r in store.list())
    assert wait_gone(sweeps.raw("sweep-orphan-test")["ray_session"]) == []


# ---- the plan, the launcher's command line, stops and cancels at the earliest moment ----------

@pytest.mark.parametrize("form", [
    dict(preset="custom", model="cnn_a", varied=[("lr", "grid", "0.01, 0.05, 0.123456789")]),
    dict(preset="fast", varied=[("lr", "loguniform", "0.000123456789:0.3"), ("batch_size", "randint", "32:256")],
         trials=7, search="optuna", early_stop="asha", subset=2000, name="-n --trials 5"),
    dict(preset="custom", model="vgg11", epochs=3, varied=[("width", "choice", "16, 48"), ("augment", "grid", "true, false"),
                                                          ("dropout", "uniform", "0:0.55")], at_once=1, name="wide * [x]"),
    dict(preset="custom", model="cnn_b", varied=[("optimizer", "choice", "sgd, adam"), ("weight_decay", "grid", "0, 1e-4")],
         trials=2, early_stop="asha"),
])
def test_the_page_spec_reaches_the_driver_unchanged(form):
    """Issue 24: the page builds a SweepSpec; its launcher passes SweepSpec.to_args(), which the
    driver parses once (cli.parse_sweep_args, as `sweep` does) back to an equal spec."""
    from fmnist_core.commands.cli import parse_sweep_args
    from ui.sweeps import SweepForm

    values = dict(model="cnn_c", epochs=2, trials=4, search="random", at_once=2, early_stop="none", subset=0, name="") | form
    spec = SweepForm(**values).spec()
    assert spec.base.name == spec.name == values["name"].strip()
    assert parse_sweep_args(spec.to_args(), owner="anon:ann") == dataclasses.replace(spec, owner="anon:ann")


def test_every_planned_trial_is_listed_before_ray_creates_it(app, tmp_path):
    """Issue 23: trials Ray had scheduled but not created were not listed. The table lists
    every planned trial from the start: a grid's values, queued, beside those that exist;
    once the sweep has ended without them, they read cancelled."""
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.sweeps.sweep import create_trial_run

    runs = tmp_path / "runs"
    store, sweep_id = RunStore(runs), "sweep-20260102-000000-plan"
    started = create_trial_run(store, TrainConfig(model="cnn_a", lr=0.05, epochs=1), {"sweep": sweep_id, "owner": "local"}, "1839e_00001")
    live_sweep_record(runs, sweep_id, "running", trial_runs=[started])
    at = app("sweep")
    table = next(f.value for f in at.dataframe if "best_test_accuracy" in f.value.columns)
    assert table[["lr", "status", "epoch"]].values.tolist() == [[0.05, "starting", "0/1"], [0.01, "queued", "0/1"]]
    assert table["run"].tolist()[0] == started and table["run"].isna().tolist() == [False, True]
    live_sweep_record(runs, sweep_id, "stopped", trial_runs=[started])
    at.run()
    table = next(f.value for f in at.dataframe if "best_test_accuracy" in f.value.columns)
    assert table["status"].tolist() == ["starting", "cancelled"]
    assert not at.exception


def test_a_sampled_plan_lists_each_draw_and_a_grid_once_per_draw(tmp_path):
    """Sampled values are drawn when a trial starts (None until then); a grid runs once per draw."""
    from fmnist_core.modeling.config import TrainConfig

    store = RunStore(tmp_path / "runs")
    sweeps = SweepStore(store)
    sweeps.write("sweep-x", {"status": "running", "options": {"trials": 4}, "space": [
        {"name": "lr", "kind": "loguniform", "values": [], "low": 1e-4, "high": 0.3},
        {"name": "batch_size", "kind": "grid", "values": [64, 128], "low": None, "high": None}]})
    record = sweeps.read("sweep-x")
    assert sweeps.not_created(record, []) == [{"lr": None, "batch_size": 64}, {"lr": None, "batch_size": 128}] * 2
    made = store.create(TrainConfig(model="cnn_a", lr=0.01, batch_size=128), run_id="sweep-x-t01", sweep="sweep-x").name
    assert sweeps.not_created(record, [store.read(made)]) == [{"lr": None, "batch_size": 64}, {"lr": None, "batch_size": 64},
                                                             {"lr": None, "batch_size": 128}]


def test_cancel_on_a_trial_that_is_starting_cancels_it(app, tmp_path, tiny_data):
    """Issue 23: a starting trial showed "Cancel" and its click stopped it ("stopped", with a
    resume state). The label is Cancel, and the trial ends as cancelled, with nothing to resume."""
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.sweeps.sweep import create_trial_run, train_trial
    from fmnist_core.training.resume import RESUME_NAME

    runs = tmp_path / "runs"
    store, sweep_id = RunStore(runs), "sweep-20260102-000000-cncl"
    config = TrainConfig(model="cnn_a", lr=0.05, epochs=2, batch_size=64)
    run_id = create_trial_run(store, config, {"sweep": sweep_id, "owner": "local"}, "1839e_00000")
    live_sweep_record(runs, sweep_id, "running", trial_runs=[run_id])
    at = app("train")
    assert store.read(run_id).status == "starting"
    button = at.button(key=f"stop-{run_id}")
    assert button.label == "Cancel"
    button.click().run()
    assert not at.exception and (runs / run_id / "stop.json").exists()
    result = train_trial(store, run_id, config, lambda: tiny_data)  # the worker goes on preparing, then sees it
    run = store.read(run_id)
    assert (result["status"], run.status, run.result["message"], run.history) == ("cancelled", "cancelled", "cancelled before it started", [])
    assert not (runs / run_id / "stop.json").exists() and not (runs / run_id / RESUME_NAME).exists()


def child_processes(pid: int) -> list[str]:
    return [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


@pytest.mark.ray
@pytest.mark.parametrize("moment", ["first record", "Ray starting", "a trial training"])
def test_stop_while_a_sweep_starts_ends_it_as_stopped(tiny_dir, tmp_path, monkeypatch, moment):
    """Issue 23: Stop in a sweep's first seconds recorded "interrupted" (SIGTERM before the driver's
    handler) or "failed: SystemExit" (Ray's handler, while Ray started). The page's launcher starts
    a real driver; SIGTERM comes as soon as its record exists, as soon as Ray's first process does
    (ray.init under way), or once a trial trains (Ray's crash handler, installed while Ray started,
    killed the driver after ours ran): it ends stopped, and leaves no Ray process."""
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.sweeps.sweep import SweepSpec
    from fmnist_core.sweeps.sweep_launch import SweepLauncher
    from fmnist_core.sweeps.sweep_space import parse_grid

    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    runs, sweep_id = tmp_path / "runs", f"sweep-20260101-000000-{secrets.token_hex(2)}"
    launcher = SweepLauncher(RunStore(runs))
    spec = SweepSpec(base=TrainConfig(model="cnn_a", epochs=50, batch_size=256), space=[parse_grid("lr=0.01,0.05")], max_concurrent=1)
    launcher.launch(sweep_id, spec)
    driver = launcher._launched[sweep_id].process
    ready = {"first record": lambda: launcher.sweeps.path(sweep_id).exists(), "Ray starting": lambda: launcher.sweeps.path(sweep_id).exists() and child_processes(driver.pid),
             "a trial training": lambda: any(r.history for r in launcher.sweeps.runs.list())}[moment]
    while not ready():
        assert driver.poll() is None, launcher.sweeps.log_path(sweep_id).read_text()[-2000:]
        time.sleep(0.001)
    driver.send_signal(signal.SIGTERM)
    code = driver.wait(timeout=120)
    record = launcher.sweeps.read(sweep_id)
    assert record.status == "stopped", (record.status, record.message, launcher.sweeps.log_path(sweep_id).read_text()[-2000:])
    assert record.message in ("stopped before it started", "stopped by Ctrl-C or SIGTERM; finished epochs are kept"), record.message
    assert code == 0 and not launcher.sweeps.stop_path(sweep_id).exists()
    assert all(r.status == "stopped" for r in launcher.sweeps.trials(record)) and (moment != "a trial training" or launcher.sweeps.trials(record))
    assert wait_gone(launcher.sweeps.raw(sweep_id).get("ray_session")) == []


@pytest.mark.ray
def test_stop_before_the_driver_has_recorded_its_sweep_ends_it_as_stopped(tiny_dir, tmp_path, monkeypatch):
    """The page's Stop as soon as Launch is pressed, before the driver has written anything:
    the stop file stops it before Ray starts (no signal it could not yet handle)."""
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.sweeps.sweep import SweepSpec
    from fmnist_core.sweeps.sweep_launch import SweepLauncher
    from fmnist_core.sweeps.sweep_space import parse_grid

    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    runs, sweep_id = tmp_path / "runs", "sweep-20260101-000000-soon"
    launcher = SweepLauncher(RunStore(runs))
    launcher.launch(sweep_id, SweepSpec(base=TrainConfig(model="cnn_a", epochs=50), space=[parse_grid("lr=0.01,0.05")]))
    launcher.stop(sweep_id)
    code = launcher._launched[sweep_id].process.wait(timeout=120)
    record = launcher.sweeps.read(sweep_id)
    assert (record.status, record.message, code) == ("stopped", "stopped before it started", 0)
    assert launcher.sweeps.trials(record) == []


# ---- SweepState, without Streamlit running ------------------------------------------------------

def test_sweep_state_keeps_the_chosen_sweep_while_listed_then_shows_the_newest():
    from ui.sweep_state import SweepState

    session: dict = {}
    state = SweepState(session)
    assert state.shown_among([]) is None and session == {}  # no sweeps: nothing kept
    assert state.shown_among(["s3", "s2", "s1"]) == "s3" and session == {"sweep_picker": "s3"}  # newest first
    session["sweep_pick_abc"] = "s1"  # the picker widget, under its key of the moment
    state.picked("sweep_pick_abc")
    assert state.shown_among(["s4", "s3", "s2", "s1"]) == "s1"  # a newer sweep does not move the choice
    assert state.shown_among(["s4", "s3"]) == "s4"  # the chosen one was deleted: the newest
    state.confirm_delete_sweep = "s4"
    assert session["confirm_delete_sweep"] == "s4"
    state.confirm_delete_sweep = None
    assert "confirm_delete_sweep" not in session and SweepState({}).confirm_delete_sweep is None
