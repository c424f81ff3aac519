"""The Train page's session state: one typed object, each field under its own st.session_state key.

The keys stay those the widgets, Predict's photo-set panel ("selected_run": the Train page
opens on it) and the tests use. Its rules are tested on a plain dict, without Streamlit running.
"""

from __future__ import annotations

from collections.abc import Iterable

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import SETTINGS
from ui.form import from_widget, to_widget, widget_key
from ui.page_state import PageState, SessionKey

FIELDS = list(SETTINGS)  # every setting is on the form (ui.form builds each widget from its declaration)


class TrainState(PageState):
    """This session's Train page: the form, the run it shows and what its buttons left behind."""

    # the form: its values as last drawn (None: a fresh visit, the link holds the form)
    form_saved = SessionKey[dict | None](None)
    link_problems = SessionKey[dict[str, str]]({}, key="url_problems", factory=dict)  # {field: why the link's value was dropped}
    preset = SessionKey[str | None](None)  # the Preset select box
    preset_base = SessionKey[str | None](None)  # the recipe the form came from, while it reads "custom (from …)"
    form_error = SessionKey[UserError | None](None)  # why the last Start was refused
    # the runs
    selected_run = SessionKey[str | None](None)  # this session's own run, whatever another visitor starts
    run_picker = SessionKey[str | None](None)  # the Run select box
    picker_label = SessionKey[str | None](None)  # the label the browser last drew for it
    scroll_to_run = SessionKey[str | None](None)  # a run just started here: its panel is scrolled into view once
    starts = SessionKey[int](0)  # scrolls so far: each needs a new element
    confirm_delete = SessionKey[str | None](None)  # the run whose delete waits for Yes or Keep
    undo_delete = SessionKey[tuple[str, str] | None](None)  # (id, name) of the run last sent to the trash
    smoothing = SessionKey[float](0.9)  # the per-batch loss slider
    log_loss = SessionKey[bool](False)  # the log-scale toggle
    # A rerun of the whole page drops the clicks it carries (rename, delete, undo, trash) if it
    # reruns before they are acted on: only the fragments' own reruns, after the page, may.
    page_drawn = SessionKey[bool](False, key="train_page_drawn")

    # ---- the form's widgets -------------------------------------------------------------
    def form_values(self) -> dict:
        """The settings as the widgets hold them now."""
        return {f: from_widget(f, self.session[widget_key(f)]) for f in FIELDS}

    def fill_form(self, values: dict) -> None:
        """Put `values` (settings) into their widgets."""
        for f, value in values.items():
            self.session[widget_key(f)] = to_widget(f, value)

    def restore_widgets(self) -> None:
        """Widget state is dropped while another page shows: put the saved form back."""
        saved = self.form_saved
        if saved is None:
            return
        for f in FIELDS:
            self.session.setdefault(widget_key(f), to_widget(f, saved[f]))

    # ---- the shown run --------------------------------------------------------------------
    def keep_selection(self, ids: Iterable[str], active_ids: list[str]) -> str | None:
        """The run this session shows: its choice while that run exists, else (first visit,
        or the run was deleted) the newest active run, else the newest run."""
        ids = list(ids)
        if self.selected_run not in ids:
            self.selected_run = next(iter(active_ids or ids), None)
        return self.selected_run

    def show_in_picker(self, run_id: str, label: str) -> None:
        """The Run select box shows this session's selection whatever the list does; setting
        it also makes the browser redraw the chosen label, which it would otherwise keep as
        it was (a stale status)."""
        if self.run_picker != run_id or self.picker_label != label:
            self.run_picker = run_id
        self.picker_label = label

    def picked(self) -> None:
        """The Run select box changed. The browser sends back the label it last drew; when
        the run's name or status changed since, that label is no longer an option and comes
        back as text: the id ends it."""
        self.selected_run = str(self.run_picker).rsplit(" · ", 1)[-1]

    def started(self, run_id: str) -> None:
        """Start queued `run_id`: show it, and scroll to it (Start is below the fold)."""
        self.form_error = None
        self.selected_run = self.scroll_to_run = run_id

    def take_scroll(self, run_id: str) -> int | None:
        """The scroll's number if `run_id` was just started here (once), else None."""
        if self.scroll_to_run != run_id:
            return None
        self.scroll_to_run = None
        self.starts += 1
        return self.starts

    def restored(self, run_id: str) -> None:
        """A run came back from the trash: show it; the undo bar has done its job."""
        self.selected_run = run_id
        self.undo_delete = None
