"""The Train page's shown run: its heading, a live panel polled while it is queued or training
(status, Stop or Resume, progress, per-batch loss), then its epoch figures and charts."""

from __future__ import annotations

import streamlit as st

from fmnist_core.base.statuses import ACTIVE, RESUMABLE, RunStatus
from fmnist_core.base.words import counted
from fmnist_core.store.run_store import best_test_accuracy
from fmnist_core.training.run_manager import RunManager
from ui.badges import badge
from ui.charts import epoch_chart, shared_batch_loss_spec
from ui.run_list import HEADING_CHARS, RunList
from ui.text import heading_html, literal, plain
from ui.train_state import TrainState
from ui.visitor import act, why_locked

REFRESH_SECONDS = 1.0  # the shown run's progress, and the run list while any run is queued or training
MESSAGE_SHOWN = (RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)  # statuses whose message says why
AS_ERROR = (RunStatus.DIVERGED, RunStatus.FAILED)  # the rest of those are information


def fmt_seconds(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour; a dash for unknown."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def progress_text(progress: dict, epochs: int) -> str:
    """The progress bar's line, from a training run's progress event (missing figures as 0)."""
    p = progress
    return (f"epoch {p.get('epoch', 0)}/{epochs} · batch {p.get('batch', 0)}/{p.get('batches', 0)} · "
            f"{p.get('images_per_s', 0):,.0f} img/s · ETA {fmt_seconds(p.get('eta_s'))}")


def needs_redraw(status: str, epochs: int, status_shown: str, epochs_shown: int, runs_changed: bool) -> bool:
    """Whether the whole page is out of date: an epoch ended (its charts and table) or a
    status changed, this run's or another's."""
    return status != status_shown or epochs != epochs_shown or runs_changed


def live_panel(manager: RunManager, runs: RunList, state: TrainState, run_id: str, status_shown: str, epochs_shown: int) -> None:
    """Status, stop, progress and per-batch loss of the shown run: polled every second while
    it is queued or training. The epoch charts, the run list and the table sit outside it and
    are redrawn (one full rerun) only when an epoch ends or a status changes, so the page
    costs the training as little CPU as possible. A fragment."""
    run = manager.view(run_id)
    status, config = run.status, run.config
    cols = st.columns([2, 1])
    # shared mode: only the owner or an admin; anyone, for a run that outlived its server, where no admin can log in
    locked = why_locked(manager.owner_of(run_id), orphan=manager.is_orphan(run_id))
    # The buttons come before the rerun below: a click arrives as a rerun of this fragment, and
    # one that comes with a change (an epoch ended, another visitor queued a run) would be dropped
    # by st.rerun() if not acted on first.
    if status in ACTIVE and not run.live and not runs.is_trial(run_id):
        st.caption("Trained by another process (e.g. the CLI): its epochs appear here as they finish; stop it there.")
    elif status in ACTIVE and cols[1].button("Stop" if status == RunStatus.RUNNING else "Cancel", key=f"stop-{run_id}", width="stretch",
                                             disabled=bool(locked), help=locked):
        if act(manager.stop, run_id):
            st.rerun()  # a cancelled run ends at once: show it
    elif status in RESUMABLE and manager.can_resume(run_id) and cols[1].button(
            "Resume", key=f"resume-{run_id}", width="stretch", disabled=bool(locked), help=locked or "Continue from its last finished epoch."):
        if act(manager.resume, run_id):
            st.rerun()
    if state.page_drawn and needs_redraw(status, len(run.history), status_shown, epochs_shown, runs.changed_in(manager)):
        st.rerun()  # redraw the page once
    cols[0].markdown(f"**Status:** {badge(status)}", help="interrupted = the server stopped while it trained; its finished epochs are kept.")
    if run.message and status in MESSAGE_SHOWN:
        (st.error if status in AS_ERROR else st.info)(plain(run.message))  # result.json is a file: its text stays text
    if status == RunStatus.QUEUED:
        st.info(f"Waiting in the queue (position {manager.queue_position(run_id)}): {manager.queue_note}.")
    if run.live and status == RunStatus.RUNNING:
        st.progress(min(1.0, run.progress.get("progress", 0.0)), text=progress_text(run.progress, config["epochs"]))
    if points := list(run.batch_losses):
        st.vega_lite_chart(spec=shared_batch_loss_spec(run_id, status, run.total_steps, state.smoothing, state.log_loss, points),
                           width="stretch")


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


def draw_run(manager: RunManager, runs: RunList, state: TrainState, run_id: str) -> None:
    """The shown run: heading and live panel (what Start scrolls into view), then its epochs."""
    run = manager.view(run_id)
    status, history, config = run.status, run.history, run.config
    with st.container(key="shown_run"):
        # A name is user text: shown as text, never Markdown; a long one is cut, the whole in the tooltip.
        st.html(heading_html(runs.name(run_id), HEADING_CHARS))
        st.caption(f"{literal(run_id)} · {config.get('model')} · {config.get('optimizer')} lr {config.get('lr')} · "
                   f"batch {config.get('batch_size')} · {counted(config.get('epochs') or 0, 'epoch')}")
        # Polled while this run is queued or training; a run that has ended is drawn once (watch_runs follows the list).
        polled = run_id in runs.active_ids
        st.fragment(live_panel, run_every=REFRESH_SECONDS if polled else None)(
            manager, runs, state, run_id, runs.by_id[run_id].status, len(history))
    if (scroll := state.take_scroll(run_id)) is not None:  # just started here; a new element each time, so it runs again
        st.html(SCROLL_TO_RUN % scroll, unsafe_allow_javascript=True)
    if history:
        last = history[-1]
        m = st.columns(4)
        m[0].metric("Test accuracy", f"{last['test_accuracy']:.2f}%", help=f"best {best_test_accuracy(history):.2f}%")
        m[1].metric("Train accuracy", f"{last['train_accuracy']:.2f}%")
        m[2].metric("Loss (report's sum)", f"{last['train_loss_sum']:.1f}", help="Sum of the per-batch training losses of the last epoch, as the report's Table 1.")
        m[3].metric("Images/s", f"{last['images_per_s']:,.0f}")
        charts = st.columns(2)
        charts[0].altair_chart(epoch_chart(history, "accuracy", epochs_planned=config.get("epochs")), width="stretch")
        charts[1].altair_chart(epoch_chart(history, "loss", epochs_planned=config.get("epochs"), log_scale=state.log_loss), width="stretch")
    elif status == RunStatus.RUNNING:
        st.caption("The epoch charts appear when the first epoch ends.")
    if history or run.batch_losses:
        a, b = st.columns(2)
        b.toggle("Log scale (loss charts)", key="log_loss")
        if run.batch_losses:
            a.slider("Smoothing (per-batch loss)", 0.0, 0.99, 0.9, 0.01, key="smoothing",
                     help="Exponential moving average, as TensorBoard's; 0 = the raw losses.")
