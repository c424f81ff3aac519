"""Train: pick a model and hyperparameters, start runs in the background, watch them live."""

from __future__ import annotations

import streamlit as st

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import SETTINGS, TrainConfig, config_problems
from fmnist_core.modeling.models import model_info
from ui.form import config_summary, setting_widgets
from ui.live_panel import REFRESH_SECONDS, draw_run
from ui.run_actions import rename_or_delete, trash_box, undo_bar
from ui.run_list import RunList, watch_runs
from ui.state import model_card, run_manager
from ui.tables import csv_text, runs_frame, runs_table
from ui.text import plain
from ui.train_form import PRESETS, apply_preset, off_fields, preset_label, start_error, sync_form
from ui.train_state import FIELDS, TrainState
from ui.visitor import current_visitor, limit_problems, limits_caption

IDLE_REFRESH_SECONDS = 2.0  # the run list while nothing is queued or training: another visitor's (or the CLI's) new run still shows up
ADVANCED = [f for f in FIELDS if SETTINGS[f].advanced]
BASIC = [f for f in FIELDS if f not in ("model", "name") and f not in ADVANCED]
TABLE_COLUMNS = ["name", "status", "model", "lr", "batch_size", "epochs_done", "epochs_planned", "best_test_accuracy", "seconds"]

manager = run_manager()
state = TrainState()
state.page_drawn = False  # until the end of this run of the page: see TrainState.page_drawn
# The form's state is kept across pages in this session; on a fresh visit, it comes from the link.
form_values, new_query = sync_form(state, st.query_params.to_dict())
if new_query is not None:  # the address bar holds the form: refresh-proof, shareable
    st.query_params.from_dict(new_query)
problems = config_problems(form_values) or limit_problems(form_values)  # checked before drawing, so each field shows its own

st.title("Train")
form_col, run_col = st.columns([1, 2], gap="large")

# ---- the form --------------------------------------------------------------------------
with form_col:
    st.selectbox(
        "Preset", PRESETS, key="preset", on_change=apply_preset, args=(state,), format_func=lambda p: preset_label(p, state.preset_base),
        help="Fills the form with a named recipe: the report's own (SGD, momentum 0.9, batch 32, 20 epochs, custom init) or ours.",
    )
    setting_widgets([st], ["model"], problems, state.link_problems)
    info = model_info(form_values["model"])
    # the form's width (set by a preset or the field below) changes the count and the table
    params, table = model_card(info.name, form_values["width"] if info.takes_width and "width" not in problems else None)
    st.caption(f"{info.description} · **{params:,} parameters**")
    with st.expander("Layer table"):
        st.table(table, hide_index=True)  # static HTML: a data grid here costs every load of the page its first paint
    disabled, placeholders = off_fields(info)  # a field this model does not use is off, and says why
    setting_widgets(st.columns(2), BASIC, problems, state.link_problems, disabled, placeholders)
    with st.expander("Advanced", expanded=any(f in problems for f in ADVANCED)):
        setting_widgets([st], ADVANCED, problems, state.link_problems, disabled, placeholders)
    setting_widgets([st], ["name"], problems, state.link_problems)

    if problems:
        st.caption(":material/block: Nothing can start until the fields marked in red are fixed.")
    else:
        st.caption(f"**Will train:** {plain(config_summary(form_values))}", help="Exactly the settings Start will run; the address "
                   "bar holds them too, so a refresh keeps the form and the link can be shared.")
    if st.button("Start training", type="primary", width="stretch", key="start", disabled=bool(problems),
                 help="Fix the fields marked in red first." if problems else None):
        try:
            run_id = manager.submit(TrainConfig.from_dict(form_values), name=form_values["name"], visitor=current_visitor())
        except UserError as e:  # a bad field (ConfigError) or a shared-mode limit (access.LimitError)
            state.form_error = e
        else:
            state.started(run_id)
            st.toast(f"Run {run_id} queued")
    if caption := limits_caption(form_values, manager):
        st.caption(caption)
    if state.form_error is not None:
        st.error(start_error(state.form_error))

# ---- the selected run, live ---------------------------------------------------------------
runs = RunList.read(manager)
selected = state.keep_selection(runs.ids, runs.active_ids)  # this session's own: another visitor's run never moves it
with run_col:
    undo_bar(manager, state)
    if selected is not None:  # the store holds runs (keep_selection chose one of them)
        state.show_in_picker(selected, runs.picker_label(selected))
        st.selectbox("Run", runs.ids, key="run_picker", on_change=state.picked, format_func=runs.picker_label)
    if selected is None:
        st.info("No runs yet. Pick a preset or a model on the left and press **Start training**.")
    else:
        draw_run(manager, runs, state, selected)
        rename_or_delete(manager, runs, state, selected)

# ---- every run: the full width, so the columns that matter fit at 1400 px --------------------
st.divider()
st.subheader("All runs")
if runs.records:
    show_cancelled = st.toggle("Show cancelled runs", key="show_cancelled", help="Runs cancelled in the queue, before any epoch.")
    frame = runs_frame(runs.records, show_cancelled=show_cancelled)
    runs_table(frame, TABLE_COLUMNS, key="runs_table")
    st.download_button("Download this table (CSV)", csv_text(frame), "runs.csv", "text/csv", key="download_runs")
    for r in runs.records:
        for problem in r.problems:
            st.warning(plain(f"{r.id}: {problem}"))  # a folder name is user text (the CLI's --out)
else:
    st.caption("Runs you start appear here, and stay after a restart.")
trash_box(manager, state)

if selected not in runs.active_ids:  # the shown run's live panel polls while it is active; else this watches the list
    st.fragment(watch_runs, run_every=REFRESH_SECONDS if runs.active_ids else IDLE_REFRESH_SECONDS)(manager, runs, state)
state.page_drawn = True
