"""Every status a run or a sweep can have, and their groups, declared once.

The values are the strings stored in run and sweep files (`result.json`, the sweep record),
so a member compares equal to the text read back (StrEnum)."""

from __future__ import annotations

from enum import StrEnum


class _Shown:
    """How a status reads, for every page and the CLI: its label, a Material icon name and a
    tone ("good", "bad", "warning" or "" for neutral), and its group."""

    @property
    def label(self) -> str:
        return str(self)

    @property
    def icon(self) -> str:
        return _ICONS[str(self)]

    @property
    def tone(self) -> str:
        return _TONES.get(str(self), "")


class RunStatus(_Shown, StrEnum):
    QUEUED = "queued"  # waiting for the app's worker (or, for a sweep's trial, not yet created)
    STARTING = "starting"  # a sweep's trial: its Ray worker made the folder and prepares the run
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # on request; its finished epochs are kept
    DIVERGED = "diverged"  # the loss became NaN or exploded
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped before it started
    INTERRUPTED = "interrupted"  # its process died (a server restart, a killed worker)

    @property
    def active(self) -> bool:
        return self in ACTIVE

    @property
    def resumable(self) -> bool:
        """Continued from its last finished epoch by Resume."""
        return self in RESUMABLE


class SweepStatus(_Shown, StrEnum):
    STARTING = "starting"  # the driver starts Ray
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in SWEEP_ACTIVE

    @property
    def label(self) -> str:
        return "starting Ray" if self is SweepStatus.STARTING else str(self)  # a sweep starts its Ray first


ACTIVE = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
ENDED = (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.CANCELLED,
         RunStatus.INTERRUPTED)
RESUMABLE = (RunStatus.INTERRUPTED, RunStatus.STOPPED, RunStatus.FAILED)  # continued from the last finished epoch
SWEEP_ACTIVE = (SweepStatus.STARTING, SweepStatus.RUNNING, SweepStatus.STOPPING)
SWEEP_ENDED = (SweepStatus.FINISHED, SweepStatus.STOPPED, SweepStatus.FAILED, SweepStatus.INTERRUPTED)

_ICONS = {"queued": "hourglass_top", "starting": "hourglass_top", "running": "play_circle", "stopping": "stop_circle",
          "finished": "check_circle", "stopped": "stop_circle", "diverged": "warning", "failed": "error",
          "cancelled": "cancel", "interrupted": "warning"}
_TONES = {"running": "good", "finished": "good", "diverged": "bad", "failed": "bad", "interrupted": "warning"}
