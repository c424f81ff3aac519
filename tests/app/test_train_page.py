"""The Train page's state and rules without Streamlit running: TrainState over a plain dict,
the form's sync with the link and presets, the run list, the live panel's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import DEFAULTS, ConfigError
from fmnist_core.modeling.models import model_info
from fmnist_core.modeling.recipes import RECIPES
from fmnist_core.store.run_store import RunRecord
from ui.form import widget_key
from ui.live_panel import fmt_seconds, needs_redraw, progress_text
from ui.run_list import HEADING_CHARS, RunList
from ui.train_form import apply_preset, off_fields, preset_label, preset_values, start_error, sync_form
from ui.train_state import TrainState

# ---- TrainState ---------------------------------------------------------------------------

def test_fields_live_under_the_keys_the_widgets_and_other_pages_use():
    session = {}
    state = TrainState(session)
    assert state.selected_run is None and state.starts == 0 and state.smoothing == 0.9 and state.log_loss is False
    state.selected_run = "r1"  # Predict's photo-set panel writes this key; the page opens on it
    state.link_problems["lr"] = "not from the link: x"
    assert session == {"selected_run": "r1", "url_problems": {"lr": "not from the link: x"}}
    session["run_picker"] = "r2"  # as the Run select box leaves it
    assert state.run_picker == "r2"
    state.selected_run = None  # None is "absent": the page's own test for a key
    assert "selected_run" not in session


def test_each_session_has_its_own_link_problems():
    first, second = TrainState({}), TrainState({})
    first.link_problems["lr"] = "bad"
    assert second.link_problems == {}


def test_the_selection_holds_while_its_run_exists_then_falls_to_the_newest_active_run():
    state = TrainState({})
    assert state.keep_selection([], []) is None  # no runs
    assert state.keep_selection(["new", "old"], []) == "new"  # first visit: the newest
    state.selected_run = "old"
    assert state.keep_selection(["another", "new", "old"], ["another"]) == "old"  # another visitor's run moves nothing
    assert state.keep_selection(["another", "new"], ["another"]) == "another"  # "old" was deleted: the active run


def test_a_picked_label_ends_in_the_run_id_even_when_it_is_stale():
    state = TrainState({"run_picker": "a · b · finished · 20260101-000000-abcd"})
    state.picked()
    assert state.selected_run == "20260101-000000-abcd"


def test_the_picker_shows_the_selection_and_is_reset_when_its_label_changes():
    session = {}
    state = TrainState(session)
    state.show_in_picker("r1", "one · running · r1")
    assert session["run_picker"] == "r1" and session["picker_label"] == "one · running · r1"
    session["run_picker"] = "one · queued · r1"  # a stale label the browser sent back as text
    state.show_in_picker("r1", "one · running · r1")
    assert session["run_picker"] == "r1"
    state.show_in_picker("r1", "one · finished · r1")  # the status changed: the label is remembered for the next rerun
    assert session["run_picker"] == "r1" and session["picker_label"] == "one · finished · r1"


def test_start_selects_the_new_run_and_scrolls_to_it_once():
    state = TrainState({"form_error": UserError("over the limit")})
    state.started("r1")
    assert state.form_error is None and state.selected_run == "r1"
    assert state.take_scroll("r2") is None
    assert state.take_scroll("r1") == 1 and state.take_scroll("r1") is None
    state.started("r2")
    assert state.take_scroll("r2") == 2  # a new number: a new element, so the script runs again


def test_a_restored_run_is_shown_and_its_undo_bar_goes():
    state = TrainState({"undo_delete": ("r1", "doomed"), "selected_run": "r2"})
    state.restored("r1")
    assert state.selected_run == "r1" and state.undo_delete is None


# ---- the form, the link and the presets -----------------------------------------------------

def test_a_fresh_visit_reads_the_form_from_the_link_and_marks_what_it_cannot_use():
    state = TrainState({})
    values, query = sync_form(state, {"batch_size": "512", "lr": "abc", "other": "x"})
    assert values == {**DEFAULTS, "batch_size": 512}
    assert state.session[widget_key("batch_size")] == 512.0  # whole numbers sit in float widgets
    assert list(state.link_problems) == ["lr"] and "abc" in state.link_problems["lr"]
    assert query == {"batch_size": "512"}  # what it could not use, and other pages' parameters, leave the address
    assert sync_form(state, query) == (values, None)  # the address already holds the form


def test_a_later_visit_keeps_the_sessions_form_whatever_the_link_says():
    state = TrainState({})
    sync_form(state, {"epochs": "3"})
    state.session.pop(widget_key("epochs"))  # another page was shown: Streamlit dropped the widget's state
    values, query = sync_form(state, {})
    assert values["epochs"] == 3 and query == {"epochs": "3"}


def test_a_preset_link_is_applied_once_and_its_own_settings_win():
    state = TrainState({})
    assert sync_form(state, {"preset": "fast"})[0] == preset_values("fast") and state.preset == "fast"
    state = TrainState({})
    values, query = sync_form(state, {"preset": "fast", "epochs": "4", "name": "mine", "lr": "banana"})
    assert values == {**preset_values("fast"), "epochs": 4, "name": "mine"}
    assert state.preset_base == "fast" and state.preset == "custom"  # reads "custom (from fast)": not the recipe as it is
    assert list(state.link_problems) == ["lr"]
    assert "preset" not in query and query["epochs"] == "4" and query["name"] == "mine"
    assert sync_form(state, query) == (values, None)  # not applied again: a refresh keeps the user's edits


def test_an_edited_field_is_the_users_again():
    state = TrainState({})
    sync_form(state, {"lr": "abc", "seed": "x"})
    state.session[widget_key("lr")] = 0.05
    sync_form(state, {})
    assert list(state.link_problems) == ["seed"]


def test_editing_a_presets_setting_makes_it_custom_but_naming_the_run_does_not():
    state = TrainState({"preset": "fast"})
    sync_form(state, {})
    apply_preset(state)  # the Preset box's on_change
    sync_form(state, {})
    state.session[widget_key("name")] = "mine"
    sync_form(state, {})
    assert state.preset == "fast"
    state.session[widget_key("lr")] = 2 * RECIPES["fast"]["lr"]
    sync_form(state, {})
    assert state.preset == "custom" and preset_label("custom", state.preset_base) == "custom (from fast)"
    assert preset_label("custom", None) == "custom" and preset_label("fast", None).startswith("fast – quickest to 90%")


def test_choosing_custom_changes_nothing():
    state = TrainState({"preset": "custom"})
    sync_form(state, {"epochs": "3"})
    apply_preset(state)
    assert state.form_values()["epochs"] == 3 and state.preset_base is None


def test_the_softmax_quirk_is_off_for_every_model_but_cnn_b():
    state = TrainState({})
    values, _ = sync_form(state, {"model": "cnn_b", "softmax_output": "true"})
    assert values["softmax_output"] is True
    state.session[widget_key("model")] = "cnn_a"
    values, query = sync_form(state, {})
    assert values["softmax_output"] is False and "softmax_output" not in query


def test_fields_a_model_does_not_use_are_off_and_say_why():
    disabled, placeholders = off_fields(model_info("cnn_a"))
    assert disabled == {"dropout": True, "width": True, "softmax_output": True}
    disabled, placeholders = off_fields(model_info("mlp4"))
    assert disabled == {"dropout": False, "width": True, "softmax_output": True}
    assert placeholders["dropout"] == f"model default ({model_info('mlp4').default_dropout})"
    assert off_fields(model_info("cnn_b"))[0]["softmax_output"] is False


def test_a_refused_start_names_its_field_or_reads_as_a_sentence():
    assert start_error(ConfigError("lr", "0 is out of range")) == "**Learning rate**: 0 is out of range. Nothing was started."
    assert start_error(UserError("the queue is full")) == "The queue is full. Nothing was started."
    assert start_error(UserError("*bold* name")) == r"\*bold\* name. Nothing was started."  # user text stays text


# ---- the run list ------------------------------------------------------------------------------

def record(run_id: str, name: str = "run", status: str = "finished", sweep: str | None = None) -> RunRecord:
    return RunRecord(run_id, Path("/nonexistent") / run_id, name, "2026-01-01", {}, [], None, status, sweep=sweep)


def test_the_run_list_knows_its_active_runs_trials_and_labels():
    runs = RunList([record("c", "x" * 80, "running", sweep="s1"), record("b", status="queued"), record("a")])
    assert runs.ids == ["c", "b", "a"] and runs.active_ids == ["c", "b"]
    assert runs.is_trial("c") and not runs.is_trial("a") and not runs.is_trial("gone")
    assert runs.name("a") == "run" and runs.name("gone") == "gone"
    label = runs.picker_label("c")
    assert label == f"{'x' * (HEADING_CHARS - 1)}… · running · c"


def test_the_run_list_is_out_of_date_when_a_run_comes_goes_or_changes_status():
    runs = RunList([record("b"), record("a", status="running")], {"a": "running"})
    assert not runs.changed(["b", "a"], {"a": "running"})
    assert runs.changed(["c", "b", "a"], {"a": "running"})  # another visitor's run
    assert runs.changed(["a"], {"a": "running"})  # deleted elsewhere
    assert runs.changed(["b", "a"], {"a": "finished"})  # the run this server trains ended


# ---- the live panel's text ----------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [(None, "–"), (0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3600, "1:00:00"), (3725, "1:02:05")])
def test_times_read_as_a_clock(seconds, text):
    assert fmt_seconds(seconds) == text


def test_the_progress_line_says_where_training_is():
    progress = {"epoch": 2, "batch": 17, "batches": 235, "images_per_s": 12345.6, "eta_s": 75}
    assert progress_text(progress, 5) == "epoch 2/5 · batch 17/235 · 12,346 img/s · ETA 1:15"
    assert progress_text({}, 5) == "epoch 0/5 · batch 0/0 · 0 img/s · ETA –"  # before the first batch


def test_the_page_is_redrawn_when_an_epoch_ends_or_a_status_changes():
    assert not needs_redraw("running", 2, "running", 2, runs_changed=False)
    assert needs_redraw("running", 3, "running", 2, runs_changed=False)
    assert needs_redraw("finished", 2, "running", 2, runs_changed=False)
    assert needs_redraw("running", 2, "running", 2, runs_changed=True)
