"""Issue 25's first target: with a 3-node local Ray cluster of 2 CPUs each (head with none),
6 Train-page runs queued by 3 visitors all start within 10 s of each other. Each run is
submitted to the app's manager (RemoteRunManager, as the Train page does); "started" is the
moment the manager first reports it RUNNING (its first batch trained on the cluster). The
runs are then stopped: what is measured is when they start, not how long they train.

The three nodes share this machine's cores, so the spread also pays for six Python processes
importing torch and loading the data on 2 cores at once: an upper bound for real nodes.

    .venv/bin/python scripts/remote_start_spread.py [DATA_DIR]   (default: the real data set)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
NODES, CPUS_PER_NODE, VISITORS, RUNS_EACH = 3, 2, ("ann", "bob", "carl"), 2
TARGET_SPREAD_S = 10.0
CHILD = """
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


def main() -> None:
    from ray.cluster_utils import Cluster

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if len(sys.argv) > 1:
        env["FMNIST_DATA_DIR"] = os.environ["FMNIST_DATA_DIR"] = sys.argv[1]
    os.environ["PYTHONPATH"] = str(ROOT)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(NODES):
            cluster.add_node(num_cpus=CPUS_PER_NODE)
        cluster.wait_for_nodes()
        with TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / "runs"), ",".join(VISITORS), str(RUNS_EACH),
                                  str(TARGET_SPREAD_S)], env={**env, "FMNIST_RAY_ADDRESS": cluster.address}, cwd=ROOT,
                                 capture_output=True, text=True, timeout=1200)
            print(out.stdout.strip() or out.stderr[-3000:], flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
