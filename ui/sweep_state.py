"""The Sweep page's session state: one typed object, each field under its own st.session_state key.

The picker's widget gets a new key whenever a sweep's label changes (see app_pages/sweep.py), so
the sweep shown is kept here, under "sweep_picker". Its rules are tested on a plain dict, without
Streamlit running.
"""

from __future__ import annotations

from collections.abc import Sequence

from ui.page_state import PageState, SessionKey


class SweepState(PageState):
    """This session's Sweep page: the sweep it shows and the one whose delete waits for an answer."""

    sweep_picker = SessionKey[str | None](None)  # the sweep shown, whatever the picker widget's key is now
    confirm_delete_sweep = SessionKey[str | None](None)  # the sweep whose delete waits for Yes or Keep

    def shown_among(self, ids: Sequence[str]) -> str | None:
        """The sweep to show: the one chosen while it is listed, else the newest (ids come newest
        first), else none."""
        if self.sweep_picker not in ids:
            self.sweep_picker = ids[0] if ids else None
        return self.sweep_picker

    def picked(self, picker_key: str) -> None:
        """The picker widget under `picker_key` was changed: show what it holds."""
        self.sweep_picker = self.session[picker_key]
