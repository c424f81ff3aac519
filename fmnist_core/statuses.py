"""Every status a run or a sweep can have, and their groups, declared once.

The values are the strings stored in run and sweep files (`result.json`, the sweep record),
so a member compares equal to the text read back (StrEnum)."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"  # waiting for the app's worker (or, for a sweep's trial, not yet created)
    STARTING = "starting"  # a sweep's trial: its Ray worker made the folder and prepares the run
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # on request; its finished epochs are kept
    DIVERGED = "diverged"  # the loss became NaN or exploded
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped before it started
    INTERRUPTED = "interrupted"  # its process died (a server restart, a killed worker)


class SweepStatus(StrEnum):
    STARTING = "starting"  # the driver starts Ray
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


ACTIVE = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
ENDED = (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.CANCELLED,
         RunStatus.INTERRUPTED)
RESUMABLE = (RunStatus.INTERRUPTED, RunStatus.STOPPED, RunStatus.FAILED)  # continued from the last finished epoch
SWEEP_ACTIVE = (SweepStatus.STARTING, SweepStatus.RUNNING, SweepStatus.STOPPING)
SWEEP_ENDED = (SweepStatus.FINISHED, SweepStatus.STOPPED, SweepStatus.FAILED, SweepStatus.INTERRUPTED)
