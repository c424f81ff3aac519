"""Train-page runs on a real multi-node Ray cluster (issue 25): a head with no CPUs and two
worker nodes of one logical CPU each, all on this machine (ray.cluster_utils.Cluster). The runs
train the tiny learnable data set; the workers find it through FMNIST_DATA_DIR, which the
manager forwards to its actors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fmnist_core.base.files import atomic_write_json
from fmnist_core.base.statuses import ACTIVE, RunStatus
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import RunStore, owner_record
from fmnist_core.training.remote_runs import ACTOR_PREFIX, NAMESPACE, RAY_ADDRESS_ENV, RemoteRunManager, make_run_manager
from fmnist_core.training.run_manager import RunManager, check_resume
from tests.helpers.paths import ROOT
from tests.helpers.runs import RUN_FILES, cfg

pytestmark = pytest.mark.ray

# Nodes are declared dead after ~1.5 s of missed health checks (Ray's default is about 15 s).
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}


@pytest.fixture(scope="module")
def cluster(tiny_dir):
    import ray
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        env.setenv("FMNIST_DATA_DIR", str(tiny_dir))
        env.setenv("PYTHONPATH", str(ROOT))  # the workers import this checkout's fmnist_core
        env.setenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": FAST_HEALTH})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        env.setenv(RAY_ADDRESS_ENV, cluster.address)
        try:
            yield cluster
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()


@pytest.fixture
def managers(cluster, tmp_path):
    """New managers on one run store; afterwards every run actor is killed and both CPUs are free."""
    import ray

    made: list[RunManager] = []

    def make(policy: Policy | None = None) -> RemoteRunManager:
        manager = make_run_manager(RunStore(tmp_path / "runs"), policy=policy)
        assert isinstance(manager, RemoteRunManager)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == NAMESPACE and actor["name"].startswith(ACTOR_PREFIX):
            ray.kill(ray.get_actor(actor["name"], namespace=NAMESPACE))
    deadline = time.time() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)


def wait_for(check, timeout: float, what: str, every: float = 0.1):
    deadline = time.time() + timeout
    while not (value := check()):
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)
    return value


def owner_of(manager: RunManager, run_id: str) -> dict:
    return json.loads((manager.store.root / run_id / "owner.json").read_text())


def test_without_an_address_the_manager_is_the_local_one_and_ray_is_not_imported(tmp_path):
    code = ("import sys; from fmnist_core.store.run_store import RunStore; "
            "from fmnist_core.training.remote_runs import make_run_manager; "
            f"m = make_run_manager(RunStore({str(tmp_path / 'runs')!r})); "
            "print(type(m).__name__, 'ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != RAY_ADDRESS_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.stdout.split() == ["RunManager", "False"], out.stderr[-2000:]


def test_runs_train_on_the_cluster_as_many_at_once_as_it_has_cpus_and_write_the_usual_files(managers):
    manager = managers()
    ids = [manager.submit(cfg(epochs=3, batch_size=16), name=f"run {i}") for i in range(3)]
    # two nodes of one CPU: two runs train at once, the third waits in the app's queue
    placed = (RunStatus.STARTING, RunStatus.RUNNING)
    wait_for(lambda: all(manager.view(i).status in placed for i in ids[:2]), 30, "two runs on the cluster at once")
    assert manager.view(ids[2]).status == RunStatus.QUEUED and manager.queue_position(ids[2]) == 1
    assert manager.wait_idle(120)
    nodes = {owner_of(manager, i)["ray_node"] for i in ids[:2]}
    assert len(nodes) == 2  # one on each worker node: each held its node's one CPU
    views = [manager.view(i) for i in ids]
    assert views[2].started >= min(v.ended for v in views[:2])  # the third waited for a free CPU
    for run_id in ids:
        record = manager.store.read(run_id)
        assert record.status == RunStatus.FINISHED, (record.status, record.result)
        assert all((record.path / name).is_file() for name in RUN_FILES), sorted(p.name for p in record.path.iterdir())
        assert len(record.history) == 3 and record.history[-1]["test_accuracy"] > 50
        owner = owner_of(manager, run_id)
        assert owner["ray_actor"] == f"fmnist-run-{run_id}" and owner["host"] and "starting" not in owner
        assert record.result["threads"] == 1
        view = manager.view(run_id)  # what the page draws: the stored epochs and per-batch losses
        assert len(view.history) == 3 and view.batch_losses and view.total_steps == 3 * 38
    import ray

    names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
    assert not {f"fmnist-run-{i}" for i in ids} & names  # each actor ended with its run: its CPU is free again


def test_stop_reaches_the_remote_run_within_seconds_and_it_keeps_its_epochs(managers):
    manager = managers()
    run_id = manager.submit(cfg(epochs=40, batch_size=8))
    blocker = manager.submit(cfg(epochs=40, batch_size=8))
    waiting = manager.submit(cfg(epochs=2))
    assert manager.view(waiting).status == RunStatus.QUEUED
    manager.stop(waiting)  # Cancel in the app's queue: at once
    assert manager.view(waiting).status == RunStatus.CANCELLED
    wait_for(lambda: len(manager.view(run_id).history) >= 1, 60, "a first epoch")
    asked = time.time()
    manager.stop(run_id)
    wait_for(lambda: manager.view(run_id).status not in ACTIVE, 10, "the stop", every=0.05)
    took = time.time() - asked
    assert took < 5, took
    record = manager.store.read(run_id)
    assert record.status == RunStatus.STOPPED and 1 <= record.result["epochs_done"] == len(record.history) < 40
    manager.stop(blocker)
    wait_for(lambda: manager.view(blocker).status not in ACTIVE, 10, "the second stop")
    # it resumes from its last finished epoch, on the cluster again
    done = len(record.history)
    manager.resume(run_id)
    wait_for(lambda: len(manager.view(run_id).history) > done, 60, "an epoch after resuming")
    manager.stop(run_id)
    wait_for(lambda: manager.view(run_id).status not in ACTIVE, 10, "the stop after resuming")
    after = manager.store.read(run_id).history
    assert after[:done] == record.history and len(after) > done


RESTARTED_APP = """
import sys, time
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.remote_runs import make_run_manager
from tests.helpers.runs import cfg
policy = Policy(mode="shared", login=False)
manager = make_run_manager(RunStore(sys.argv[1]), policy=policy)
run_id = manager.submit(cfg(epochs=40, batch_size=8), name="outlives its app", visitor=policy.visitor("visitor-b", "b"))
print(run_id, flush=True)
deadline = time.time() + 90
while not manager.view(run_id).history and time.time() < deadline:
    time.sleep(0.1)
print("trained" if manager.view(run_id).history else "never trained: " + manager.view(run_id).status, flush=True)
time.sleep(600)
"""


def test_a_new_manager_reattaches_the_runs_its_predecessor_left_on_the_cluster(managers, tmp_path, cluster):
    root = tmp_path / "runs"
    store = RunStore(root)
    # a run whose actor is gone while no app ran (its owner names an actor the cluster does not have)
    gone = store.create(cfg(epochs=4), "gone", owner="visitor-a").name
    atomic_write_json(root / gone / "owner.json", owner_record(ray_actor="fmnist-run-nobody", ray_node="0" * 56))
    app = subprocess.Popen([sys.executable, "-c", RESTARTED_APP, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        run_id = app.stdout.readline().strip()
        assert app.stdout.readline().strip() == "trained", run_id
    finally:
        app.send_signal(signal.SIGKILL)  # the server dies: no close(), nothing settled
        app.wait(10)
    manager = managers(Policy(mode="shared", login=False))  # no admin can log in
    view = manager.view(run_id)
    assert view.status == RunStatus.RUNNING and view.live, view
    assert manager.is_orphan(run_id)  # its visitor may be gone: as any run a restart left
    epochs = len(view.history)
    wait_for(lambda: len(manager.view(run_id).history) > epochs, 30, "more epochs after the restart")
    assert manager.view(gone).status == RunStatus.FAILED
    assert "its Ray actor was gone when the Studio started again" in manager.view(gone).message
    manager.stop(run_id, visitor=manager.policy.visitor("another-visitor", "another"))  # an orphan: anyone, where no admin logs in
    wait_for(lambda: manager.view(run_id).status not in ACTIVE, 10, "the stop of a re-attached run")
    assert manager.store.read(run_id).status == RunStatus.STOPPED


def test_a_killed_worker_node_fails_the_run_with_the_reason_and_keeps_its_epochs(managers, cluster):
    manager = managers()
    run_id = manager.submit(cfg(epochs=40, batch_size=8))
    wait_for(lambda: len(manager.view(run_id).history) >= 1, 60, "a first epoch")
    node_id = owner_of(manager, run_id)["ray_node"]
    node = next(n for n in cluster.list_all_nodes() if n.node_id == node_id)
    cluster.remove_node(node, allow_graceful=False)
    try:
        wait_for(lambda: manager.view(run_id).status not in ACTIVE, 40, "the run's end after its node died")
        view = manager.view(run_id)
        assert view.status == RunStatus.FAILED
        assert "the Ray node it trained on died" in view.message and "resume it from its last finished epoch" in view.message, view.message
        record = manager.store.read(run_id)
        assert record.status == RunStatus.FAILED and record.result["message"] == view.message
        assert len(record.history) >= 1 and record.result["epochs_done"] == len(record.history)
        config, state = check_resume(manager.store, run_id)  # resumable from its last finished epoch
        assert state.epoch == len(record.history)
    finally:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
