"""Train: pick a model and hyperparameters, start runs in the background, watch them live."""

from __future__ import annotations

import streamlit as st

from fmnist_core.config import DEFAULTS, SETTINGS, TrainConfig, config_problems, unused_settings
from fmnist_core.errors import UserError
from fmnist_core.models import model_info
from fmnist_core.recipes import DESCRIPTIONS, RECIPES
from fmnist_core.run_store import best_test_accuracy
from fmnist_core.statuses import ACTIVE, RESUMABLE
from fmnist_core.words import counted
from ui.badges import badge
from ui.charts import epoch_chart, shared_batch_loss_spec
from ui.form import config_summary, form_from_query, from_widget, query_from_form, setting_widget, to_widget, widget_key
from ui.state import model_card, run_manager
from ui.tables import csv_text, runs_frame, runs_table
from ui.text import heading_html, literal, plain, truncate
from ui.visitor import act, current_visitor, limit_problems, limits_caption, why_locked

REFRESH_SECONDS = 1.0  # the shown run's progress, and the run list while any run is queued or training
IDLE_REFRESH_SECONDS = 2.0  # the run list while nothing is: another visitor's (or the CLI's) new run still shows up
FIELDS = list(SETTINGS)  # every setting is on the form (ui.form builds each widget from its declaration)
ADVANCED = [f for f in FIELDS if SETTINGS[f].advanced]
HEADING_CHARS = 60  # a longer run name is cut with an ellipsis in headings and lists
TABLE_COLUMNS = ["name", "status", "model", "lr", "batch_size", "epochs_done", "epochs_planned", "best_test_accuracy", "seconds"]

manager = run_manager()


def preset_values(preset: str) -> dict:
    return {**DEFAULTS, **RECIPES[preset], "name": preset}


def apply_preset() -> None:
    """Fill the form from the chosen recipe (fields it does not set get the defaults)."""
    preset = st.session_state["preset"]
    if preset == "custom":
        return
    for f, value in preset_values(preset).items():
        st.session_state[widget_key(f)] = to_widget(f, value)
    st.session_state["preset_base"] = preset
    st.session_state["url_problems"] = {}


def preset_label(preset: str) -> str:
    if preset == "custom":
        base = st.session_state.get("preset_base")
        return f"custom (from {base})" if base else "custom"
    return f"{preset} – {DESCRIPTIONS.get(preset, 'the report recipe')}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


# ---- the form's state: kept across pages in this session; on a fresh visit, from the link ----
if "form_saved" not in st.session_state:  # first visit or a browser refresh: the URL holds the form
    from_link, link_problems = form_from_query(st.query_params.to_dict())
    st.session_state["form_saved"] = {**DEFAULTS, **from_link}
    st.session_state["url_problems"] = link_problems
for f in FIELDS:  # widget state is dropped while another page shows; put it back
    st.session_state.setdefault(widget_key(f), to_widget(f, st.session_state["form_saved"][f]))
# Home's "train a 90% model" links here with ?preset=fast: apply it once, then drop it from the address.
# The link's own settings (?preset=fast&epochs=4&name=mine) win over its preset's.
if st.query_params.get("preset") in RECIPES:
    link_values, link_problems = form_from_query(st.query_params.to_dict())
    st.session_state["preset"] = st.query_params["preset"]
    apply_preset()
    for f, value in link_values.items():
        st.session_state[widget_key(f)] = to_widget(f, value)
    st.session_state["url_problems"] = link_problems
    st.session_state["form_saved"] = {f: from_widget(f, st.session_state[widget_key(f)]) for f in FIELDS}  # the link's form, not an edit
    del st.query_params["preset"]
if st.session_state[widget_key("model")] != "cnn_b":  # the quirk exists only there; off, not an error
    st.session_state[widget_key("softmax_output")] = False
form_values = {f: from_widget(f, st.session_state[widget_key(f)]) for f in FIELDS}
for f in list(st.session_state["url_problems"]):  # a field the user has edited since is theirs again
    if form_values[f] != st.session_state["form_saved"][f]:
        del st.session_state["url_problems"][f]
st.session_state["form_saved"] = form_values
problems = config_problems(form_values) or limit_problems(form_values)  # checked before drawing, so each field shows its own
if query_from_form(form_values) != st.query_params.to_dict():  # the address bar holds the form: refresh-proof, shareable
    st.query_params.from_dict(query_from_form(form_values))

base = st.session_state.get("preset_base")
if base and st.session_state.get("preset") == base and any(
        form_values[f] != v for f, v in preset_values(base).items() if f != "name"):
    st.session_state["preset"] = "custom"  # the form no longer is that preset; choosing it again re-applies it


def field(container, name: str, **kw) -> None:
    setting_widget(container, name, problem=problems.get(name), **kw)
    if name in st.session_state["url_problems"]:  # the link's text is anyone's: shown escaped
        container.caption(f":orange[:material/link_off: {plain(st.session_state['url_problems'][name])}; the default is shown.]")


st.title("Train")
form_col, run_col = st.columns([1, 2], gap="large")

# ---- the form --------------------------------------------------------------------------
with form_col:
    st.selectbox(
        "Preset", ["custom", *RECIPES], key="preset", on_change=apply_preset, format_func=preset_label,
        help="Fills the form with a named recipe: the report's own (SGD, momentum 0.9, batch 32, 20 epochs, custom init) or ours.",
    )
    field(st, "model")
    model_name = st.session_state[widget_key("model")]
    info = model_info(model_name)
    # the form's width (set by a preset or the field below) changes the count and the table
    shown_width = form_values["width"] if info.takes_width and "width" not in problems else None
    params, table = model_card(model_name, shown_width)
    st.caption(f"{info.description} · **{params:,} parameters**")
    with st.expander("Layer table"):
        st.dataframe(table, hide_index=True, width="stretch")

    # Why a field is off for this model; its value is then not used by training.
    disabled = {name: name in unused_settings({"model": model_name}) for name in ("dropout", "width", "softmax_output")}
    placeholders = {"dropout": f"model default ({info.default_dropout})" if info.default_dropout is not None else "no dropout",
                    "width": "model default"}
    basic = [f for f in FIELDS if f not in ("model", "name") and f not in ADVANCED]
    columns = st.columns(2)
    for i, f in enumerate(basic):
        field(columns[i % 2], f, disabled=disabled.get(f, False), placeholder=placeholders.get(f))
    with st.expander("Advanced", expanded=any(f in problems for f in ADVANCED)):
        for f in ADVANCED:
            field(st, f, disabled=disabled.get(f, False), placeholder=placeholders.get(f))
    field(st, "name")

    if problems:
        st.caption(":material/block: Nothing can start until the fields marked in red are fixed.")
    else:
        summary = config_summary(form_values)
        st.caption(f"**Will train:** {plain(summary)}", help="Exactly the settings Start will run; the address bar holds them too, "
                   "so a refresh keeps the form and the link can be shared.")
    if st.button("Start training", type="primary", width="stretch", key="start", disabled=bool(problems),
                 help="Fix the fields marked in red first." if problems else None):
        try:
            run_id = manager.submit(TrainConfig.from_dict(form_values), name=form_values["name"], visitor=current_visitor())
        except UserError as e:  # a bad field (ConfigError) or a shared-mode limit (access.LimitError)
            st.session_state["form_error"] = e
        else:
            st.session_state.pop("form_error", None)
            st.session_state["selected_run"] = run_id
            st.session_state["scroll_to_run"] = run_id  # Start is below the fold, the live panel at the top: show it
            st.toast(f"Run {run_id} queued")
    if caption := limits_caption(form_values, manager):
        st.caption(caption)
    if "form_error" in st.session_state:
        error = st.session_state["form_error"]
        field_name = getattr(error, "field", None)
        label = f"**{SETTINGS[field_name].label}**: " if field_name in SETTINGS else ""
        message = plain(getattr(error, "message", str(error)))
        st.error(f"{label}{message if label else message[:1].upper() + message[1:]}. Nothing was started.")

# ---- the selected run, live ---------------------------------------------------------------
records = manager.list_runs()
by_id = {r.id: r for r in records}
active_ids = [r.id for r in records if r.status in ACTIVE]
# This session's own selection: a run another visitor starts never moves it.
if st.session_state.get("selected_run") not in by_id:  # first visit, or the run was deleted
    st.session_state["selected_run"] = (active_ids or [r.id for r in records] or [None])[0]
selected = st.session_state["selected_run"]
# What the run list was drawn from; runs_changed() compares it with now.
drawn_ids = [r.id for r in records]
live_statuses = manager.statuses()
drawn_statuses = {**live_statuses, **{r.id: r.status for r in records if r.id in live_statuses}}
shown_active = selected in active_ids  # its live panel polls; otherwise watch_runs does
page_drawn = False  # True once this run of the page has ended: only the fragments' own reruns (polls, clicks) compare then


def runs_changed() -> bool:
    """A run appeared or went (another visitor's, the CLI's), or one this server holds changed
    status: the run picker and the table are then out of date. Cheap enough to poll."""
    return manager.store.ids() != drawn_ids or manager.statuses() != drawn_statuses



def live_panel(run_id: str, status_shown: str, epochs_shown: int) -> None:
    """Status, stop, progress and per-batch loss of the shown run: polled every second while
    it is queued or training. The epoch charts, the run list and the table sit outside it and
    are redrawn (one full rerun) only when an epoch ends or a status changes (runs_changed), so
    the page costs the training as little CPU as possible."""
    run = manager.view(run_id)
    status, config = run.status, run.config
    cols = st.columns([2, 1])
    # shared mode: only the owner or an admin; anyone, for a run that outlived its server, where no admin can log in
    locked = why_locked(manager.owner_of(run_id), orphan=manager.is_orphan(run_id))
    # The buttons come before the rerun below: a click arrives as a rerun of this fragment, and
    # one that comes with a change (an epoch ended, another visitor queued a run) would be dropped
    # by st.rerun() if not acted on first.
    trial = run_id in by_id and by_id[run_id].sweep  # a sweep's trial, in a Ray worker: Stop asks it to stop itself
    if status in ACTIVE and not run.live and not trial:
        st.caption("Trained by another process (e.g. the CLI): its epochs appear here as they finish; stop it there.")
    elif status in ACTIVE and cols[1].button("Stop" if status == "running" else "Cancel", key=f"stop-{run_id}", width="stretch",
                                             disabled=bool(locked), help=locked):
        if act(manager.stop, run_id):
            st.rerun()  # a cancelled run ends at once: show it
    elif status in RESUMABLE and manager.can_resume(run_id) and cols[1].button(
            "Resume", key=f"resume-{run_id}", width="stretch", disabled=bool(locked), help=locked or "Continue from its last finished epoch."):
        if act(manager.resume, run_id):
            st.rerun()
    if page_drawn and (status != status_shown or len(run.history) != epochs_shown or runs_changed()):
        st.rerun()  # an epoch ended or a status changed (this run's or another's): redraw the page once
    cols[0].markdown(f"**Status:** {badge(status)}", help="interrupted = the server stopped while it trained; its finished epochs are kept.")
    if run.message and status in ("diverged", "failed", "stopped", "cancelled", "interrupted"):
        (st.error if status in ("diverged", "failed") else st.info)(plain(run.message))  # result.json is a file: its text stays text
    if status == "queued":
        st.info(f"Waiting in the queue (position {manager.queue_position(run_id)}): one run trains at a time so runs don't fight over the CPU.")
    if run.live and status == "running":
        p = run.progress
        st.progress(min(1.0, p.get("progress", 0.0)), text=(
            f"epoch {p.get('epoch', 0)}/{config['epochs']} · batch {p.get('batch', 0)}/{p.get('batches', 0)} · "
            f"{p.get('images_per_s', 0):,.0f} img/s · ETA {fmt_seconds(p.get('eta_s'))}"
        ))
    if points := list(run.batch_losses):
        st.vega_lite_chart(spec=shared_batch_loss_spec(run_id, status, run.total_steps, st.session_state.get("smoothing", 0.9),
                                                       st.session_state.get("log_loss", False), points), width="stretch")


# Scrolls the shown run's heading and live panel to the top of the window (below Streamlit's
# 3.75rem header), once: Streamlit has no call to scroll the page. It waits up to 5 s for the
# panel, which the browser may draw a moment after this element.
SCROLL_TO_RUN = """<script>(() => {
  const until = Date.now() + 5000;
  const go = () => {
    const panel = document.querySelector(".st-key-shown_run");
    if (!panel) { if (Date.now() < until) setTimeout(go, 100); return; }
    panel.style.scrollMarginTop = "4.5rem";
    panel.scrollIntoView({block: "start", behavior: "instant"});
  };
  go();
})(); /* start %d */</script>"""


def draw_run(run_id: str) -> None:
    run = manager.view(run_id)
    status, history, config = run.status, run.history, run.config
    name = by_id[run_id].name if run_id in by_id else run_id
    with st.container(key="shown_run"):  # the heading and live panel: what Start scrolls into view
        # A name is user text: shown as text, never Markdown; a long one is cut, the whole in the tooltip.
        st.html(heading_html(name, HEADING_CHARS))
        st.caption(f"{literal(run_id)} · {config.get('model')} · {config.get('optimizer')} lr {config.get('lr')} · "
                   f"batch {config.get('batch_size')} · {counted(config.get('epochs') or 0, 'epoch')}")
        # Polled while this run is queued or training; a run that has ended is drawn once (watch_runs follows the list).
        st.fragment(live_panel, run_every=REFRESH_SECONDS if shown_active else None)(run_id, by_id[run_id].status, len(history))
    if st.session_state.get("scroll_to_run") == run_id:  # just started here
        del st.session_state["scroll_to_run"]
        st.session_state["starts"] = st.session_state.get("starts", 0) + 1  # a new element each time, so it runs again
        st.html(SCROLL_TO_RUN % st.session_state["starts"], unsafe_allow_javascript=True)
    if history:
        last = history[-1]
        m = st.columns(4)
        m[0].metric("Test accuracy", f"{last['test_accuracy']:.2f}%", help=f"best {best_test_accuracy(history):.2f}%")
        m[1].metric("Train accuracy", f"{last['train_accuracy']:.2f}%")
        m[2].metric("Loss (report's sum)", f"{last['train_loss_sum']:.1f}", help="Sum of the per-batch training losses of the last epoch, as the report's Table 1.")
        m[3].metric("Images/s", f"{last['images_per_s']:,.0f}")
        charts = st.columns(2)
        log_loss = st.session_state.get("log_loss", False)
        charts[0].altair_chart(epoch_chart(history, "accuracy", epochs_planned=config.get("epochs")), width="stretch")
        charts[1].altair_chart(epoch_chart(history, "loss", epochs_planned=config.get("epochs"), log_scale=log_loss), width="stretch")
    elif status == "running":
        st.caption("The epoch charts appear when the first epoch ends.")
    if history or run.batch_losses:
        a, b = st.columns(2)
        b.toggle("Log scale (loss charts)", key="log_loss")
        if run.batch_losses:
            a.slider("Smoothing (per-batch loss)", 0.0, 0.99, 0.9, 0.01, key="smoothing",
                     help="Exponential moving average, as TensorBoard's; 0 = the raw losses.")


def picker_label(run_id: str) -> str:
    return f"{truncate(by_id[run_id].name, HEADING_CHARS)} · {by_id[run_id].status} · {run_id}"


def pick_run() -> None:
    # The browser sends back the label it last drew; when the run's name or status changed
    # since, that label is no longer an option and comes back as text: the id ends it.
    st.session_state["selected_run"] = str(st.session_state["run_picker"]).rsplit(" · ", 1)[-1]


def delete_controls(run_id: str) -> None:
    """Rename, and delete after a confirmation: a deleted run goes to the trash (Undo below)."""
    record = by_id[run_id]
    locked = why_locked(record.owner)  # shared mode: only the owner or an admin
    with st.expander("Rename or delete the selected run"):
        new_name = st.text_input("New name", value=record.name, key=f"rename-{run_id}", disabled=bool(locked))
        a, b = st.columns(2)
        if a.button("Rename", key="rename", disabled=bool(locked), help=locked) and act(manager.rename, run_id, new_name):
            st.rerun()
        if b.button("Delete run", key="delete", disabled=run_id in active_ids or bool(locked),
                    help=locked or "Stop it first if it is training."):
            st.session_state["confirm_delete"] = run_id
        if st.session_state.get("confirm_delete") == run_id:
            st.warning(f"Delete {literal(truncate(record.name, HEADING_CHARS))}? It goes to the trash, where you can restore it.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete", key="confirm_delete_yes", type="primary"):
                if act(manager.delete, run_id):
                    st.session_state["undo_delete"] = (run_id, record.name)
                st.session_state.pop("confirm_delete", None)
                st.rerun()
            if no.button("Keep it", key="confirm_delete_no"):
                st.session_state.pop("confirm_delete", None)
                st.rerun()


def undo_bar() -> None:
    run_id, name = st.session_state["undo_delete"]
    a, b = st.columns([4, 1])
    a.success(f"Deleted {literal(truncate(name, HEADING_CHARS))}: it is in the trash.", icon=":material/delete:")
    if b.button("Undo", key="undo_delete_button", width="stretch"):
        if act(manager.restore, run_id):
            st.session_state["selected_run"] = run_id
        st.session_state.pop("undo_delete", None)
        st.rerun()


def trash_box() -> None:
    trashed = manager.store.trashed()
    if not trashed:
        return
    with st.expander(f"Trash ({len(trashed)})", icon=":material/delete:"):
        for record in trashed:
            a, b = st.columns([4, 1])
            a.text(f"{truncate(record.name, HEADING_CHARS)} · {record.status} · {counted(len(record.history), 'epoch')} · {record.id}")
            locked = why_locked(record.owner)
            if b.button("Restore", key=f"restore-{record.id}", width="stretch", disabled=bool(locked), help=locked):
                if act(manager.restore, record.id):  # the owner check is the manager's, not only the button's
                    st.session_state["selected_run"] = record.id
                    st.session_state.pop("undo_delete", None)
                    st.rerun()
        if not current_visitor().is_admin:
            st.caption("Only an admin can empty the trash.")
            return
        sure = st.checkbox("Delete the runs in the trash for good (weights and history)", key="empty_trash_sure")
        if st.button("Empty trash", key="empty_trash", disabled=not sure):
            manager.store.empty_trash()
            st.session_state.pop("undo_delete", None)
            st.rerun()


with run_col:
    if "undo_delete" in st.session_state:
        undo_bar()
    if records:
        # The widget shows this session's selection whatever the list does; setting it also makes the
        # browser redraw the chosen label, which it would otherwise keep as it was (a stale status).
        label = picker_label(selected)
        if st.session_state.get("run_picker") != selected or st.session_state.get("picker_label") != label:
            st.session_state["run_picker"] = selected
        st.session_state["picker_label"] = label
        st.selectbox("Run", list(by_id), key="run_picker", on_change=pick_run, format_func=picker_label)
    if selected is None:
        st.info("No runs yet. Pick a preset or a model on the left and press **Start training**.")
    else:
        draw_run(selected)
        delete_controls(selected)

# ---- every run: the full width, so the columns that matter fit at 1400 px --------------------
st.divider()
st.subheader("All runs")
if records:
    show_cancelled = st.toggle("Show cancelled runs", key="show_cancelled", help="Runs cancelled in the queue, before any epoch.")
    frame = runs_frame(records, show_cancelled=show_cancelled)
    runs_table(frame, TABLE_COLUMNS, key="runs_table")
    st.download_button("Download this table (CSV)", csv_text(frame), "runs.csv", "text/csv", key="download_runs")
    for r in records:
        for problem in r.problems:
            st.warning(plain(f"{r.id}: {problem}"))  # a folder name is user text (the CLI's --out)
else:
    st.caption("Runs you start appear here, and stay after a restart.")
trash_box()


def watch_runs() -> None:
    """Redraw the page when runs_changed(), so the run picker and the table follow the store
    while the shown run has nothing to poll for (the live panel watches while it has). Draws
    nothing."""
    if page_drawn and runs_changed():
        st.rerun()


if not shown_active:
    st.fragment(watch_runs, run_every=REFRESH_SECONDS if active_ids else IDLE_REFRESH_SECONDS)()
# A rerun from the full run of the page would drop the clicks it carries (those below the live
# panel: rename, delete, undo, trash) before they are acted on; only the fragments' own reruns may.
page_drawn = True
