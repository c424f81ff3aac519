"""Issue 25's figures for Train-page runs on a Ray cluster, each on a local cluster started here
(`ray.cluster_utils.Cluster`, the head with no CPUs), the app side in a process of its own:

- `cpu` (default): the app process's CPU while two runs train on a 2-node cluster (1 CPU each),
  against the same two runs trained in the app's own thread. Prints that process's CPU-seconds
  (user + system, `files.process_cpu_seconds`) and wall seconds from submit to idle. Target: the server
  under 10% of one core while the cluster trains.
- `spread`: 6 runs queued by 3 visitors on a 3-node cluster of 2 CPUs each; "started" is when
  the manager first reports a run RUNNING (its first batch trained on the cluster); the runs
  are then stopped. Target: all 6 start within 10 s of each other. The nodes share this
  machine's cores, so the spread also pays for six processes importing torch and loading the
  data on them at once: an upper bound for real nodes.

    .venv/bin/python scripts/remote_runs_measure.py [cpu|spread] [DATA_DIR]   (default: cpu, the real data set)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
VISITORS, RUNS_EACH, TARGET_SPREAD_S = ("ann", "bob", "carl"), 2, 10.0
CPU_CHILD = """
import os, sys, time
from fmnist_core.base.files import process_cpu_seconds
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.remote_runs import make_run_manager

def cpu():
    return process_cpu_seconds(os.getpid())

manager = make_run_manager(RunStore(sys.argv[1]))
config = TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=64, epochs=2, threads=1)
c0, t0 = cpu(), time.time()
ids = [manager.submit(config, name=f"run {i}") for i in range(2)]
manager.wait_idle(900)
c1, t1 = cpu(), time.time()
print(f"{type(manager).__name__}: app process {c1 - c0:.2f} CPU-s over {t1 - t0:.1f} s wall "
      f"({100 * (c1 - c0) / (t1 - t0):.1f}% of one core); runs: {[manager.view(i).status for i in ids]}")
"""
SPREAD_CHILD = """
import sys, time
from fmnist_core.base.statuses import RunStatus
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.access import Policy
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.remote_runs import make_run_manager

visitors, runs_each = sys.argv[2].split(","), int(sys.argv[3])
manager = make_run_manager(RunStore(sys.argv[1]))
config = TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=64, epochs=1, threads=1)
t0 = time.time()
ids = [manager.submit(config, name=f"{v} {i}", visitor=Policy().visitor(v, v)) for v in visitors for i in range(runs_each)]
submitted = time.time() - t0
started = {}
while len(started) < len(ids) and time.time() - t0 < 600:
    for run_id in ids:
        if run_id not in started and manager.view(run_id).status == RunStatus.RUNNING:
            started[run_id] = time.time() - t0
    time.sleep(0.1)
for run_id in ids:
    manager.stop(run_id)
manager.wait_idle(120)
times = sorted(started.values())
print(f"{type(manager).__name__}: {len(ids)} runs submitted in {submitted:.2f} s; {len(times)} started, "
      f"at {', '.join(f'{t:.1f}' for t in times)} s after the first submit")
if times:
    print(f"spread between the first and the last start: {times[-1] - times[0]:.1f} s (target {float(sys.argv[4]):.0f} s: "
          f"{'met' if len(times) == len(ids) and times[-1] - times[0] <= float(sys.argv[4]) else 'not met'})")
"""


@contextlib.contextmanager
def local_cluster(nodes: int, cpus_per_node: int):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=cpus_per_node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def run_child(code: str, args: list[str], env: dict) -> None:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    print(out.stdout.strip() or out.stderr[-3000:], flush=True)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in ("cpu", "spread") else "cpu"
    data = [a for a in sys.argv[1:] if a not in ("cpu", "spread")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if data:
        env["FMNIST_DATA_DIR"] = os.environ["FMNIST_DATA_DIR"] = data[0]
    os.environ["PYTHONPATH"] = str(ROOT)
    local_env = {k: v for k, v in env.items() if k != "FMNIST_RAY_ADDRESS"}
    with TemporaryDirectory() as tmp:
        if what == "cpu":
            with local_cluster(2, 1) as cluster:
                run_child(CPU_CHILD, [str(Path(tmp) / "local")], local_env)
                run_child(CPU_CHILD, [str(Path(tmp) / "remote")], {**env, "FMNIST_RAY_ADDRESS": cluster.address})
        else:
            with local_cluster(3, 2) as cluster:
                run_child(SPREAD_CHILD, [str(Path(tmp) / "runs"), ",".join(VISITORS), str(RUNS_EACH), str(TARGET_SPREAD_S)],
                          {**env, "FMNIST_RAY_ADDRESS": cluster.address})


if __name__ == "__main__":
    main()
