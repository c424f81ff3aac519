"""Train: pick a model and hyperparameters, start runs in the background, watch them live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fmnist_core.config import DEFAULTS, SETTINGS, TrainConfig, config_problems
from fmnist_core.errors import UserError
from fmnist_core.models import model_info
from fmnist_core.recipes import DESCRIPTIONS, RECIPES
from fmnist_core.run_manager import RESUMABLE
from fmnist_core.run_store import ACTIVE, best_test_accuracy
from ui.charts import batch_loss_chart, epoch_chart
from ui.form import setting_widget, widget_key
from ui.state import model_card, run_manager

REFRESH_SECONDS = 1.0
FIELDS = list(SETTINGS)  # every setting is on the form (ui.form builds each widget from its declaration)
ADVANCED = [f for f in FIELDS if SETTINGS[f].advanced]

manager = run_manager()


def apply_preset() -> None:
    """Fill the form from the chosen recipe (fields it does not set get the defaults)."""
    preset = st.session_state["preset"]
    if preset == "custom":
        return
    values = {**DEFAULTS, **RECIPES[preset], "name": preset}
    for f in FIELDS:
        st.session_state[widget_key(f)] = values[f]


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


for f in FIELDS:  # first visit: the defaults
    st.session_state.setdefault(widget_key(f), DEFAULTS[f])
if st.session_state[widget_key("model")] != "cnn_b":  # the quirk exists only there; off, not an error
    st.session_state[widget_key("softmax_output")] = False
form_values = {f: st.session_state[widget_key(f)] for f in FIELDS}
problems = config_problems(form_values)  # checked before drawing, so each field shows its own

st.title("Train")
form_col, run_col = st.columns([1, 2], gap="large")

# ---- the form --------------------------------------------------------------------------
with form_col:
    st.selectbox(
        "Preset", ["custom", *RECIPES], key="preset", on_change=apply_preset,
        format_func=lambda p: p if p == "custom" else f"{p} – {DESCRIPTIONS.get(p, 'the report recipe')}",
        help="Fills the form with a named recipe: the report's own (SGD, momentum 0.9, batch 32, 20 epochs, custom init) or ours.",
    )
    setting_widget(st, "model", problem=problems.get("model"))
    model_name = st.session_state[widget_key("model")]
    info = model_info(model_name)
    # the form's width (set by a preset or the field below) changes the count and the table
    shown_width = form_values["width"] if info.takes_width and "width" not in problems else None
    params, table = model_card(model_name, shown_width)
    st.caption(f"{info.description} · **{params:,} parameters**")
    with st.expander("Layer table"):
        st.dataframe(table, hide_index=True, width="stretch")

    # Why a field is off for this model; its value is then not used by training.
    disabled = {"dropout": info.default_dropout is None, "width": not info.takes_width, "softmax_output": model_name != "cnn_b"}
    placeholders = {"dropout": f"model default ({info.default_dropout})" if info.default_dropout is not None else "no dropout",
                    "width": "model default"}
    basic = [f for f in FIELDS if f not in ("model", "name") and f not in ADVANCED]
    columns = st.columns(2)
    for i, f in enumerate(basic):
        setting_widget(columns[i % 2], f, disabled=disabled.get(f, False), placeholder=placeholders.get(f), problem=problems.get(f))
    with st.expander("Advanced", expanded=any(f in problems for f in ADVANCED)):
        for f in ADVANCED:
            setting_widget(st, f, disabled=disabled.get(f, False), placeholder=placeholders.get(f), problem=problems.get(f))
    setting_widget(st, "name", problem=problems.get("name"))

    if st.button("Start training", type="primary", width="stretch", key="start", disabled=bool(problems),
                 help="Fix the fields marked in red first." if problems else None):
        try:
            run_id = manager.submit(TrainConfig.from_dict(form_values), name=form_values["name"])
        except UserError as e:  # a field (ConfigError), or a store that cannot take the run (disk full)
            st.session_state["form_error"] = e
        else:
            st.session_state.pop("form_error", None)
            st.session_state["run_picker"] = run_id
            st.toast(f"Run {run_id} queued")
    if "form_error" in st.session_state:
        error = st.session_state["form_error"]
        field = getattr(error, "field", None)
        label = SETTINGS[field].label if field in SETTINGS else field or "Run folder"
        st.error(f"**{label}**: {getattr(error, 'message', error)}. Nothing was started.")

# ---- the selected run, live ---------------------------------------------------------------
records = manager.list_runs()
by_id = {r.id: r for r in records}
active_ids = [r.id for r in records if r.status in ACTIVE]
if st.session_state.get("run_picker") not in by_id:  # first visit, or the run was deleted
    st.session_state["run_picker"] = (active_ids or [r.id for r in records] or [None])[0]


BADGES = {"running": ":green[:material/play_circle:] running", "queued": ":material/hourglass_top: queued",
          "finished": ":green[:material/check_circle:] finished", "stopped": ":material/stop_circle: stopped",
          "diverged": ":red[:material/warning:] diverged", "failed": ":red[:material/error:] failed",
          "cancelled": ":material/cancel: cancelled", "interrupted": ":orange[:material/warning:] interrupted"}


def live_panel(run_id: str, status_shown: str, epochs_shown: int) -> None:
    """Status, stop, progress and per-batch loss: polled every second while the run is active.
    The epoch charts sit outside it and are redrawn (one full rerun) only when an epoch ends,
    so the page costs the training as little CPU as possible."""
    run = manager.view(run_id)
    status, config = run.status, run.config
    if status != status_shown or len(run.history) != epochs_shown:
        st.rerun()  # an epoch ended or the status changed: redraw the page once
    cols = st.columns([2, 1])
    cols[0].markdown(f"**Status:** {BADGES.get(status, status)}", help="interrupted = the server stopped while it trained; its finished epochs are kept.")
    if status in ACTIVE and not run.live:
        st.caption("Trained by another process (e.g. the CLI): its epochs appear here as they finish; stop it there.")
    elif status in ACTIVE and cols[1].button("Stop" if status == "running" else "Cancel", key=f"stop-{run_id}", width="stretch"):
        manager.stop(run_id)
    elif status in RESUMABLE and manager.can_resume(run_id) and cols[1].button(
            "Resume", key=f"resume-{run_id}", width="stretch", help="Continue from its last finished epoch."):
        try:
            manager.resume(run_id)
            st.rerun()
        except UserError as e:
            st.error(str(e))
    if run.message and status in ("diverged", "failed", "stopped", "cancelled", "interrupted"):
        (st.error if status in ("diverged", "failed") else st.info)(run.message)
    if status == "queued":
        st.info(f"Waiting in the queue (position {manager.queue_position(run_id)}): one run trains at a time so runs don't fight over the CPU.")
    if run.live and status == "running":
        p = run.progress
        st.progress(min(1.0, p.get("progress", 0.0)), text=(
            f"epoch {p.get('epoch', 0)}/{config['epochs']} · batch {p.get('batch', 0)}/{p.get('batches', 0)} · "
            f"{p.get('images_per_s', 0):,.0f} img/s · ETA {fmt_seconds(p.get('eta_s'))}"
        ))
    if run.batch_losses:
        st.altair_chart(batch_loss_chart(run.batch_losses), width="stretch")


def draw_run(run_id: str) -> None:
    run = manager.view(run_id)
    status, history, config = run.status, run.history, run.config
    st.subheader(by_id[run_id].name if run_id in by_id else run_id)
    st.caption(f"`{run_id}` · {config.get('model')} · {config.get('optimizer')} lr {config.get('lr')} · batch {config.get('batch_size')} · {config.get('epochs')} epochs")
    # Only an active run polls; a finished one is drawn once.
    st.fragment(live_panel, run_every=REFRESH_SECONDS if status in ACTIVE else None)(run_id, status, len(history))
    if history:
        last = history[-1]
        m = st.columns(4)
        m[0].metric("Test accuracy", f"{last['test_accuracy']:.2f}%", help=f"best {best_test_accuracy(history):.2f}%")
        m[1].metric("Train accuracy", f"{last['train_accuracy']:.2f}%")
        m[2].metric("Loss (report's sum)", f"{last['train_loss_sum']:.1f}", help="Sum of the per-batch training losses of the last epoch, as the report's Table 1.")
        m[3].metric("Images/s", f"{last['images_per_s']:,.0f}")
        charts = st.columns(2)
        charts[0].altair_chart(epoch_chart(history, "accuracy"), width="stretch")
        charts[1].altair_chart(epoch_chart(history, "loss"), width="stretch")
    elif status == "running":
        st.caption("The epoch charts appear when the first epoch ends.")


with run_col:
    selected = st.session_state["run_picker"]
    if records:
        st.selectbox("Run", list(by_id), key="run_picker", format_func=lambda rid: f"{by_id[rid].name} · {by_id[rid].status} · {rid}")
    if selected is None:
        st.info("No runs yet. Pick a preset or a model on the left and press **Start training**.")
    else:
        draw_run(selected)

    st.divider()
    st.subheader("All runs")
    if records:
        rows = pd.DataFrame([r.summary() for r in records])
        rows["seconds"] = rows["seconds"].map(lambda s: fmt_seconds(s) if pd.notna(s) else "–")
        shown = rows[["name", "status", "model", "optimizer", "lr", "batch_size", "epochs", "best_test_accuracy", "test_accuracy", "seconds", "created"]]
        st.dataframe(
            shown, hide_index=True, width="stretch", key="runs_table",
            column_config={"best_test_accuracy": st.column_config.NumberColumn("best test %", format="%.2f"),
                           "test_accuracy": st.column_config.NumberColumn("last test %", format="%.2f")},
        )
        for r in records:
            for problem in r.problems:
                st.warning(f"{r.id}: {problem}")
        if selected in by_id:
            with st.expander("Rename or delete the selected run"):
                new_name = st.text_input("New name", value=by_id[selected].name, key=f"rename-{selected}")
                a, b = st.columns(2)
                if a.button("Rename", key="rename"):
                    try:
                        manager.store.rename(selected, new_name)
                        st.rerun()
                    except ValueError as e:
                        st.error(str(e))
                if b.button("Delete run", key="delete", disabled=selected in active_ids, help="Stop it first if it is training."):
                    manager.delete(selected)
                    st.rerun()
    else:
        st.caption("Runs you start appear here, and stay after a restart.")
