"""files.process_cpu_seconds: what the measuring scripts (load_test, remote_runs_measure) read a
server's or a run's CPU with, from the same /proc parsing as the process identity."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fmnist_core.base.files import HAVE_PROC, process_cpu_seconds

pytestmark = pytest.mark.skipif(not HAVE_PROC, reason="no /proc")


def test_cpu_seconds_count_this_process_s_own_work():
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # 0.3 s of CPU, however busy the machine
        pass
    spent = process_cpu_seconds(os.getpid()) - before
    assert 0.25 <= spent <= 1.0  # clock ticks are 10 ms; other threads of this process may add a little


def test_a_process_that_has_ended_has_no_cpu_seconds():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_cpu_seconds(child.pid) is None
