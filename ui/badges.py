"""How a run's or a sweep's status is shown in Markdown: its icon in its tone's colour, then
its label (fmnist_core.base.statuses declares all three)."""

from __future__ import annotations

from fmnist_core.base.statuses import RunStatus, SweepStatus

_COLOURS = {"good": "green", "bad": "red", "warning": "orange"}


def _markdown(status: RunStatus | SweepStatus) -> str:
    icon = f":material/{status.icon}:"
    colour = _COLOURS.get(status.tone)
    return f"{f':{colour}[{icon}]' if colour else icon} {status.label}"


RUN_BADGES: dict[str, str] = {status: _markdown(status) for status in RunStatus}
SWEEP_BADGES: dict[str, str] = {status: _markdown(status) for status in SweepStatus}


def badge(status: str, sweep: bool = False) -> str:
    """A status as Markdown with its icon; an unknown one as it is."""
    return (SWEEP_BADGES if sweep else RUN_BADGES).get(status, status)
