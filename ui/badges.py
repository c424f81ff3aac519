"""How a run's or a sweep's status is shown: an icon and a colour per status, for every page."""

from __future__ import annotations

from fmnist_core.statuses import RunStatus, SweepStatus

_ICONS = {
    "queued": ":material/hourglass_top: queued", "starting": ":material/hourglass_top: starting",
    "running": ":green[:material/play_circle:] running", "stopping": ":material/stop_circle: stopping",
    "finished": ":green[:material/check_circle:] finished", "stopped": ":material/stop_circle: stopped",
    "diverged": ":red[:material/warning:] diverged", "failed": ":red[:material/error:] failed",
    "cancelled": ":material/cancel: cancelled", "interrupted": ":orange[:material/warning:] interrupted",
}
RUN_BADGES: dict[str, str] = {status: _ICONS[status] for status in RunStatus}
SWEEP_BADGES: dict[str, str] = {**{status: _ICONS[status] for status in SweepStatus},
                                SweepStatus.STARTING: ":material/hourglass_top: starting Ray"}


def badge(status: str, sweep: bool = False) -> str:
    """A status as Markdown with its icon; an unknown one as it is."""
    return (SWEEP_BADGES if sweep else RUN_BADGES).get(status, status)
