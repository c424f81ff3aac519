"""Train: pick a model and hyperparameters, start runs in the background, watch them live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fmnist_core.config import MAX_EPOCHS, OPTIMIZERS, PATCH_SIZES, PRECISIONS, SCHEDULES, ConfigError, TrainConfig
from fmnist_core.init import INIT_SCHEMES
from fmnist_core.models import list_models, model_info
from fmnist_core.recipes import DESCRIPTIONS, RECIPES
from ui.charts import batch_loss_chart, epoch_chart
from ui.state import model_card, run_manager

REFRESH_SECONDS = 1.0
ACTIVE = ("queued", "running")
FIELDS = [f for f in TrainConfig.__dataclass_fields__ if f not in ("extra", "validation", "ema", "device")]
DEFAULTS = TrainConfig().to_dict()

LABELS = {"lr": "Learning rate", "weight_decay": "Weight decay", "batch_size": "Batch size", "schedule": "LR schedule",
          "label_smoothing": "Label smoothing", "init": "Weight init", "patch": "Patching", "softmax_output": "Softmax output"}

manager = run_manager()


def apply_preset() -> None:
    """Fill the form from the chosen recipe (fields it does not set get the defaults)."""
    preset = st.session_state["preset"]
    if preset == "custom":
        return
    values = {**DEFAULTS, **RECIPES[preset], "name": preset}
    for f in FIELDS:
        st.session_state[f"f_{f}"] = values[f]


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


for f in FIELDS:  # first visit: the defaults
    st.session_state.setdefault(f"f_{f}", DEFAULTS[f])

st.title("Train")
form_col, run_col = st.columns([1, 2], gap="large")

# ---- the form --------------------------------------------------------------------------
with form_col:
    st.selectbox(
        "Preset", ["custom", *RECIPES], key="preset", on_change=apply_preset,
        format_func=lambda p: p if p == "custom" else f"{p} – {DESCRIPTIONS.get(p, 'the report recipe')}",
        help="Fills the form with a named recipe: the report's own (SGD, momentum 0.9, batch 32, 20 epochs, custom init) or ours.",
    )
    model_name = st.selectbox("Model", list_models(), key="f_model", help="Architectures from the report, VGG11, and our own.")
    info = model_info(model_name)
    # the form's width (set by a preset or the field below) changes the count and the table
    params, table = model_card(model_name, st.session_state.get("f_width") if info.takes_width else None)
    st.caption(f"{info.description} · **{params:,} parameters**")
    with st.expander("Layer table"):
        st.dataframe(table, hide_index=True, width="stretch")

    c1, c2 = st.columns(2)
    c1.selectbox("Optimizer", OPTIMIZERS, key="f_optimizer")
    c2.number_input("Learning rate", min_value=0.0, max_value=10.0, step=0.001, format="%.5f", key="f_lr",
                    help="Peak learning rate, > 0. The report used 0.1 for MLP4 and 0.01–0.17 for the others.")
    c1.number_input("Momentum", min_value=0.0, max_value=0.999, step=0.05, key="f_momentum", help="SGD and RMSprop.")
    c2.number_input("Weight decay", min_value=0.0, max_value=1.0, step=1e-4, format="%.5f", key="f_weight_decay")
    c1.number_input("Batch size", min_value=1, max_value=8192, step=32, key="f_batch_size", help="Images per step.")
    c2.number_input("Epochs", min_value=1, max_value=MAX_EPOCHS, step=1, key="f_epochs", help=f"At most {MAX_EPOCHS}.")
    c1.selectbox("LR schedule", SCHEDULES, key="f_schedule", help="step: x0.1 at 50% and 75% of training.")
    c2.number_input("Label smoothing", min_value=0.0, max_value=0.5, step=0.05, key="f_label_smoothing")
    c1.selectbox("Weight init", INIT_SCHEMES, key="f_init", help="custom = the report's: Normal for Linear, He for conv.")
    c2.selectbox("Patching", PATCH_SIZES, key="f_patch", format_func=lambda p: "off" if p == 0 else f"{p}x{p} tiles",
                 help="Train on tiles, predict with the mean of the tiles' probabilities (the report found it hurts).")
    c1.number_input("Dropout", min_value=0.0, max_value=0.95, step=0.05, key="f_dropout", disabled=info.default_dropout is None,
                    placeholder=f"model default ({info.default_dropout})" if info.default_dropout is not None else "no dropout",
                    help="Empty = the model's own default.")
    c2.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="f_seed", help="Same seed and config: same numbers.")
    c1.number_input("Width", min_value=4, max_value=256, step=8, key="f_width", placeholder="model default",
                    disabled=not info.takes_width, help="Channels of the first conv layer (VGG11: 64, fast_cnn and resnet_fm: 32); later layers scale with it.")
    c2.number_input("Threads", min_value=0, max_value=64, step=1, key="f_threads", help="0 = auto: all cores but one, leaving one for the app.")
    c1.selectbox("Precision", PRECISIONS, key="f_precision",
                 help="bf16: mixed-precision training (autocast), up to 2x faster on CPUs with AVX-512 BF16/AMX. Accuracy is always measured in fp32.")
    c2.checkbox("Channels last", key="f_channels_last", help="NHWC memory format: faster convolutions on CPU (conv models).")
    c1.checkbox("Augmentation", key="f_augment", help="Random horizontal flips and ±2 px shifts.")
    c2.checkbox("Nesterov", key="f_nesterov", help="SGD with momentum only.")
    if model_name == "cnn_b":
        st.checkbox("Softmax output (the report's double-softmax quirk)", key="f_softmax_output")
    else:
        st.session_state["f_softmax_output"] = False
    st.text_input("Run name", key="f_name", placeholder="optional")

    if st.button("Start training", type="primary", width="stretch", key="start"):
        values = {f: st.session_state[f"f_{f}"] for f in FIELDS}
        try:
            run_id = manager.submit(TrainConfig.from_dict(values), name=values["name"])
        except ConfigError as e:
            st.session_state["form_error"] = e
        else:
            st.session_state.pop("form_error", None)
            st.session_state["run_picker"] = run_id
            st.toast(f"Run {run_id} queued")
    if "form_error" in st.session_state:
        error = st.session_state["form_error"]
        st.error(f"**{LABELS.get(error.field, error.field.capitalize())}**: {error.message}. Nothing was started.")

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
    status, config = run["status"], run["config"]
    if status != status_shown or len(run["history"]) != epochs_shown:
        st.rerun()  # an epoch ended or the status changed: redraw the page once
    cols = st.columns([2, 1])
    cols[0].markdown(f"**Status:** {BADGES.get(status, status)}", help="interrupted = the server stopped while it trained; its finished epochs are kept.")
    if status in ACTIVE and not run["live"]:
        st.caption("Trained by another process (e.g. the CLI): its epochs appear here as they finish; stop it there.")
    elif status in ACTIVE and cols[1].button("Stop" if status == "running" else "Cancel", key=f"stop-{run_id}", width="stretch"):
        manager.stop(run_id)
    if run["message"] and status in ("diverged", "failed", "stopped", "cancelled", "interrupted"):
        (st.error if status in ("diverged", "failed") else st.info)(run["message"])
    if status == "queued":
        st.info(f"Waiting in the queue (position {manager.queue_position(run_id)}): one run trains at a time so runs don't fight over the CPU.")
    if run["live"] and status == "running":
        p = run["progress"]
        st.progress(min(1.0, p.get("progress", 0.0)), text=(
            f"epoch {p.get('epoch', 0)}/{config['epochs']} · batch {p.get('batch', 0)}/{p.get('batches', 0)} · "
            f"{p.get('images_per_s', 0):,.0f} img/s · ETA {fmt_seconds(p.get('eta_s'))}"
        ))
    if run["batch_losses"]:
        st.altair_chart(batch_loss_chart(run["batch_losses"]), width="stretch")


def draw_run(run_id: str) -> None:
    run = manager.view(run_id)
    status, history, config = run["status"], run["history"], run["config"]
    st.subheader(by_id[run_id].name if run_id in by_id else run_id)
    st.caption(f"`{run_id}` · {config.get('model')} · {config.get('optimizer')} lr {config.get('lr')} · batch {config.get('batch_size')} · {config.get('epochs')} epochs")
    # Only an active run polls; a finished one is drawn once.
    st.fragment(live_panel, run_every=REFRESH_SECONDS if status in ACTIVE else None)(run_id, status, len(history))
    if history:
        last = history[-1]
        m = st.columns(4)
        m[0].metric("Test accuracy", f"{last['test_accuracy']:.2f}%", help=f"best {max(h['test_accuracy'] for h in history):.2f}%")
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
