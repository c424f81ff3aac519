"""How many torch threads a run gets, and how idle OpenMP threads wait.

Why it matters (issue 22, a 2-core machine): with one other process busy on one core, an
epoch of `fast` took 66.5 s on 2 threads and 8.1 s on 1. Every parallel region of a small
conv ends in a barrier, so the thread that shares its core with the other process holds up
the one that has a core to itself, hundreds of times a second.

The rule (`choose_threads`): start from the cores this process may run on (its affinity,
`os.sched_getaffinity`); take away the other processes' work on those cores, measured now
and rounded up to whole cores once it passes a quarter of a core (`BUSY_TOLERANCE`: a shell
or a monitor costs no thread); take away the cores the caller keeps for itself (the app
keeps one for its server). Never fewer than one thread.

Why a 100 ms sample of /proc/stat and not the load average: the load average is a 1-minute
mean that counts this process's own recent work (the app's previous run, the CLI's data
loading) and processes asleep on disk; the sample says how busy our cores are right now,
just before the run starts, while this process sleeps. It costs the run 0.1 s.
"""

from __future__ import annotations

import math
import os
import time

BUSY_TOLERANCE = 0.25  # cores' worth of other work that does not cost a thread
SAMPLE_SECONDS = 0.1  # how long busy_cores() watches /proc/stat
# libgomp (torch's OpenMP) lets a thread that reached a barrier spin for ~300,000 loops
# before it sleeps. On a busy core that spinning takes the time slice the late thread needs;
# PASSIVE makes it sleep at once (GOMP_SPINCOUNT 0). It is read once, when torch loads
# libgomp, so fmnist_core/__init__.py sets it before any of our modules imports torch.
OPENMP_WAIT_POLICY = "PASSIVE"


def set_openmp_wait_policy() -> None:
    """Set OMP_WAIT_POLICY for this process (and its children) unless the user chose one."""
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)


def choose_threads(allowed: int, busy: float, kept_free: int = 0) -> int:
    """Threads for `allowed` usable cores of which other processes keep `busy` (in cores) busy,
    leaving `kept_free` cores to the caller's own other work. The whole rule; see the module."""
    taken = max(0, math.ceil(busy - BUSY_TOLERANCE))
    return max(1, allowed - taken - kept_free)


def allowed_cores() -> list[int]:
    """The CPUs this process may run on (taskset, cgroups' cpusets), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cpu_times(cores: list[int]) -> dict[int, tuple[int, int]] | None:
    """{core: (busy jiffies, total jiffies)} from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted, times = set(cores), {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in wanted:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            values = [int(v) for v in fields[:8]]
            idle = values[3] + values[4]
            times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def busy_cores(cores: list[int], seconds: float = SAMPLE_SECONDS) -> float:
    """Cores' worth of work on `cores` during the next `seconds` (this process sleeps meanwhile,
    so it is the others' work). 0.0 where /proc/stat cannot be read (not Linux)."""
    before = _cpu_times(cores)
    if not before:
        return 0.0
    time.sleep(seconds)
    after = _cpu_times(cores) or {}
    busy = 0.0
    for core, (busy_then, total_then) in before.items():
        busy_now, total_now = after.get(core, (busy_then, total_then))
        if total_now > total_then:
            busy += (busy_now - busy_then) / (total_now - total_then)
    return busy


def auto_threads(kept_free: int = 0) -> int:
    """The thread count for `--threads 0` (auto), from the cores free right now."""
    cores = allowed_cores()
    return choose_threads(len(cores), busy_cores(cores), kept_free)

