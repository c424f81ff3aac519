"""The app side's CPU while Train-page runs train on a Ray cluster (issue 25), against the same runs
trained in the app's own thread. Starts a 2-node local cluster (1 CPU each, head with none), then,
in a process of its own each time, a RunManager that trains two runs; prints that process's
CPU-seconds (utime + stime from /proc/self/stat) and wall seconds from submit to idle.

    .venv/bin/python scripts/remote_cpu.py [DATA_DIR]   (default: the real data set)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import os, sys, time
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.remote_runs import make_run_manager

def cpu():
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

manager = make_run_manager(RunStore(sys.argv[1]))
config = TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=64, epochs=2, threads=1)
c0, t0 = cpu(), time.time()
ids = [manager.submit(config, name=f"run {i}") for i in range(2)]
manager.wait_idle(900)
c1, t1 = cpu(), time.time()
print(f"{type(manager).__name__}: app process {c1 - c0:.2f} CPU-s over {t1 - t0:.1f} s wall "
      f"({100 * (c1 - c0) / (t1 - t0):.1f}% of one core); runs: {[manager.view(i).status for i in ids]}")
"""


def main() -> None:
    from ray.cluster_utils import Cluster

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if len(sys.argv) > 1:
        env["FMNIST_DATA_DIR"] = os.environ["FMNIST_DATA_DIR"] = sys.argv[1]
    os.environ["PYTHONPATH"] = str(ROOT)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        with TemporaryDirectory() as tmp:
            local_env = {k: v for k, v in env.items() if k != "FMNIST_RAY_ADDRESS"}
            for label, child_env in (("local", local_env), ("remote", {**env, "FMNIST_RAY_ADDRESS": cluster.address})):
                out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tmp) / label)], env=child_env, cwd=ROOT,
                                     capture_output=True, text=True, timeout=1800)
                print(out.stdout.strip() or out.stderr[-2000:], flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
