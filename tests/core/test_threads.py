"""The thread rule (issue 22): threads follow the cores actually free, and idle OpenMP threads sleep."""

import os
import subprocess
import sys
import time

import pytest

from fmnist_core.base.threads import allowed_cores, busy_cores, choose_threads
from tests.helpers.paths import ROOT


@pytest.mark.parametrize("allowed, busy, kept_free, threads", [
    (2, 0.0, 0, 2),    # an idle 2-core machine: both
    (2, 0.2, 0, 2),    # a shell, a monitor: not worth a thread
    (2, 0.3, 0, 1),    # past a quarter of a core, the barrier waits on it: one fewer
    (2, 1.0, 0, 1),    # one process spinning on a core (issue 22's 8x case)
    (2, 1.9, 0, 1),    # both busy: still one, never none
    (2, 0.0, 1, 1),    # the app keeps a core for its server
    (2, 1.0, 1, 1),
    (8, 1.0, 1, 6),
    (8, 2.6, 0, 5),
    (1, 0.0, 0, 1),    # `taskset -c 0`: the affinity, not the machine, counts
])
def test_threads_follow_the_free_cores(allowed, busy, kept_free, threads):
    assert choose_threads(allowed, busy, kept_free) == threads


def test_a_spinning_process_counts_as_a_busy_core():
    core = allowed_cores()[-1]
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    try:
        time.sleep(0.5)  # started and spinning
        assert busy_cores([core], seconds=0.3) > 0.6
    finally:
        spinner.kill()
        spinner.wait()


def _openmp_settings(env: dict) -> str:
    """libgomp's settings as it read them when torch loaded it (OMP_DISPLAY_ENV)."""
    code = "import fmnist_core.modeling.models"  # our package first, as the CLI and the app import it
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**env, "OMP_DISPLAY_ENV": "VERBOSE"})
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_idle_openmp_threads_sleep_instead_of_spinning():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    settings = _openmp_settings(env)
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in settings and "GOMP_SPINCOUNT = '0'" in settings
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in _openmp_settings({**env, "OMP_WAIT_POLICY": "ACTIVE"})  # the user's choice wins


def test_the_command_line_trains_on_the_cores_it_may_use(tiny_dir, tmp_path):
    """`taskset -c 0 fmnist train`: one core allowed, one thread (not the machine's core count)."""
    core = allowed_cores()[0]
    result = subprocess.run([sys.executable, "-m", "fmnist_core", "train", "--model", "cnn_a", "--epochs", "1", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, "FMNIST_DATA_DIR": str(tiny_dir)},
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(", cpu, 1 thread, fp32")


@pytest.mark.slow
def test_the_busy_machine_bench_reads_the_threads_a_run_used(tmp_path, real_data):
    """bench --busy times fresh `train` processes and reads back the threads each used (its parser
    broke once when the start line gained a field)."""
    from fmnist_core.commands.bench_busy import train_one_epoch_of_fast

    run = train_one_epoch_of_fast(1, tmp_path / "run")
    assert run["threads_used"] == 1 and run["seconds"] > 0 and run["images_per_s"] > 100
