"""The runs as one rerun of the Train page drew them, and whether the store has moved on since."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import streamlit as st

from fmnist_core.base.statuses import ACTIVE, RunStatus
from fmnist_core.store.run_store import RunRecord
from fmnist_core.training.run_manager import RunManager
from ui.text import truncate
from ui.train_state import TrainState

HEADING_CHARS = 60  # a longer run name is cut with an ellipsis in headings and lists


@dataclass(frozen=True)
class RunList:
    """The run picker, the table and the live panel are drawn from one RunList; `changed`
    compares it with the store and the manager now."""

    records: list[RunRecord]
    statuses: dict[str, RunStatus] = field(default_factory=dict)  # the manager's runs: their status as drawn

    @classmethod
    def read(cls, manager: RunManager) -> RunList:
        records = manager.list_runs()
        live = manager.statuses()
        return cls(records, {**live, **{r.id: r.status for r in records if r.id in live}})

    @cached_property  # the list does not change: it is what was drawn
    def by_id(self) -> dict[str, RunRecord]:
        return {r.id: r for r in self.records}

    @cached_property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    @cached_property
    def active_ids(self) -> list[str]:
        return [r.id for r in self.records if r.status in ACTIVE]

    def changed(self, ids_now: list[str], statuses_now: dict[str, RunStatus]) -> bool:
        """A run appeared or went (another visitor's, the CLI's), or one the manager holds
        changed status: the run picker and the table are then out of date."""
        return ids_now != self.ids or statuses_now != self.statuses

    def changed_in(self, manager: RunManager) -> bool:
        """`changed` against the store now: cheap enough to poll."""
        return self.changed(manager.store.ids(), manager.statuses())

    def name(self, run_id: str) -> str:
        return self.by_id[run_id].name if run_id in self.by_id else run_id

    def is_trial(self, run_id: str) -> bool:
        """A sweep's trial, trained in a Ray worker: Stop asks it to stop itself."""
        return bool(run_id in self.by_id and self.by_id[run_id].sweep)

    def picker_label(self, run_id: str) -> str:
        record = self.by_id[run_id]
        return f"{truncate(record.name, HEADING_CHARS)} · {record.status} · {run_id}"


def watch_runs(manager: RunManager, runs: RunList, state: TrainState) -> None:
    """Redraw the page when the run list changed, so the run picker and the table follow the
    store while the shown run has nothing to poll for (the live panel watches while it has).
    Draws nothing; a fragment."""
    if state.page_drawn and runs.changed_in(manager):
        st.rerun()
