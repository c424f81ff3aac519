"""What the Train page lets a visitor do to a run besides Stop: rename it, delete it to the
trash (asked first, with Undo), restore it from the trash, and (an admin) empty the trash."""

from __future__ import annotations

import streamlit as st

from fmnist_core.base.words import counted
from fmnist_core.training.run_manager import RunManager
from ui.run_list import HEADING_CHARS, RunList
from ui.text import literal, truncate
from ui.train_state import TrainState
from ui.visitor import act, current_visitor, why_locked


def rename_or_delete(manager: RunManager, runs: RunList, state: TrainState, run_id: str) -> None:
    """Rename, and delete after a confirmation: a deleted run goes to the trash (Undo above)."""
    record = runs.by_id[run_id]
    locked = why_locked(record.owner)  # shared mode: only the owner or an admin
    with st.expander("Rename or delete the selected run"):
        new_name = st.text_input("New name", value=record.name, key=f"rename-{run_id}", disabled=bool(locked))
        a, b = st.columns(2)
        if a.button("Rename", key="rename", disabled=bool(locked), help=locked) and act(manager.rename, run_id, new_name):
            st.rerun()
        if b.button("Delete run", key="delete", disabled=run_id in runs.active_ids or bool(locked),
                    help=locked or "Stop it first if it is training."):
            state.confirm_delete = run_id
        if state.confirm_delete == run_id:
            st.warning(f"Delete {literal(truncate(record.name, HEADING_CHARS))}? It goes to the trash, where you can restore it.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete", key="confirm_delete_yes", type="primary"):
                if act(manager.delete, run_id):
                    state.undo_delete = (run_id, record.name)
                state.confirm_delete = None
                st.rerun()
            if no.button("Keep it", key="confirm_delete_no"):
                state.confirm_delete = None
                st.rerun()


def undo_bar(manager: RunManager, state: TrainState) -> None:
    """The run just deleted, with Undo: it comes back from the trash and is shown."""
    if state.undo_delete is None:
        return
    run_id, name = state.undo_delete
    a, b = st.columns([4, 1])
    a.success(f"Deleted {literal(truncate(name, HEADING_CHARS))}: it is in the trash.", icon=":material/delete:")
    if b.button("Undo", key="undo_delete_button", width="stretch"):
        if act(manager.restore, run_id):
            state.restored(run_id)
        state.undo_delete = None
        st.rerun()


def trash_box(manager: RunManager, state: TrainState) -> None:
    """The trash, when it holds runs: each with Restore; Empty trash for an admin, once ticked."""
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
                    state.restored(record.id)
                    st.rerun()
        if not current_visitor().is_admin:
            st.caption("Only an admin can empty the trash.")
            return
        sure = st.checkbox("Delete the runs in the trash for good (weights and history)", key="empty_trash_sure")
        if st.button("Empty trash", key="empty_trash", disabled=not sure):
            manager.store.empty_trash()
            state.undo_delete = None
            st.rerun()
