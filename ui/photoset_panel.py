"""Photo sets, Streamlit side: add a set (a zip of class folders, or photos labelled in a
table), pick one, see every model's accuracy on it beside its test accuracy, and what
the chosen model gets wrong (Predict); a column per set on Compare.

The ML and the store are fmnist_core.store.photosets; this module only lays them out. Sets
have owners as runs do (ui.visitor): a visitor sees their own sets and public ones, and
only the owner or an admin may delete a set or change who sees it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fmnist_core.base.errors import UserError
from fmnist_core.formats.checkpoint import CheckpointError
from fmnist_core.images.data import CLASSES
from fmnist_core.modeling.config import MAX_NAME_LENGTH
from fmnist_core.store.photosets import FOLDER_HINT, HELDOUT_FRACTION, PhotoSet, PhotoSetScore, PhotoSetStore, evaluate_on_photoset, original_photo
from fmnist_core.training.engine import PHOTO_BATCH_SHARE
from fmnist_core.training.finetune import FINETUNE_EPOCHS, FINETUNE_LR_FACTOR, finetune_config, prepare_sources
from fmnist_core.use.inference import IMAGE_EXTENSIONS, ImageError, open_image
from ui.charts import confusion_chart, per_class_chart
from ui.every_model import unbreakable
from ui.page_state import PageState, SessionKey
from ui.state import cached_model, run_manager
from ui.tables import Column, show_table
from ui.text import literal, plain
from ui.train_state import TrainState
from ui.visitor import current_visitor, studio_policy

UNLABELLED_NAMED = 5  # photos without a class named under the table
WRONG_SHOWN = 24  # wrong photos shown, most confident first
SEEN_SCALE = 4  # the 28x28 the model saw, shown at 112 px


class PhotoSetState(PageState):
    """The panel's session state (on Predict). Its keys are the widgets' own."""

    choice = SessionKey[str | None](None, key="photoset_choice")  # the set shown (the Photo set menu)
    class_of = SessionKey[dict | None](None, key="photoset_class_of")  # {uploaded file id: class} chosen in the table


state = PhotoSetState()


def _store() -> PhotoSetStore:
    return PhotoSetStore()


@st.cache_data(max_entries=512, show_spinner=False)
def _cached_score(set_sha256: str, checkpoint: str, mtime: float, _photoset: PhotoSet) -> PhotoSetScore:
    """Keyed by the set's content hash and the checkpoint file's version: the set's name,
    owner or visibility do not change a score."""
    return evaluate_on_photoset(cached_model(checkpoint), _photoset)


def score(photoset: PhotoSet, model_loader, checkpoint: Path | None) -> PhotoSetScore:
    """A model's score on a set; cached per (set hash, checkpoint) unless it is an upload."""
    if checkpoint is None:
        return evaluate_on_photoset(model_loader(), photoset)
    return _cached_score(photoset.sha256, str(checkpoint), os.path.getmtime(checkpoint), photoset)


def _visible_sets() -> list[PhotoSet]:
    """The sets this visitor may see; a damaged one is one warning (shown to those who may see it)."""
    sets = _store().visible(current_visitor(), studio_policy())
    for photoset in sets:
        for problem in photoset.problems:
            st.warning(f"Photo set {literal(photoset.name)}: {plain(problem)}. It is left out.")
    return [s for s in sets if not s.problems]


def _refused(error: UserError, outcome: str = "Nothing was added.") -> None:
    text = str(error)
    st.error(f"{plain(text[:1].upper() + text[1:])}. {outcome}")


# ---- adding a set ------------------------------------------------------------------------------


def _add_form() -> None:
    policy, me = studio_policy(), current_visitor()
    with st.expander("Add a photo set"):
        name = st.text_input("Name of the set", key="photoset_name", max_chars=MAX_NAME_LENGTH,
                             help="Letters, digits, spaces, '.', '_' and '-'.")
        public = policy.shared and st.toggle("Visible to every visitor", key="photoset_public",
                                             help="Private by default: only you and the admins see your photos.")
        zip_tab, table_tab = st.tabs(["A zip of class folders", "Label photos here"])
        with zip_tab:
            st.caption(f"One folder per class inside the zip: {FOLDER_HINT}.")
            archive = st.file_uploader("Zip", type=["zip"], key="photoset_zip")
            if st.button("Add the zip", key="photoset_add_zip", disabled=archive is None) and archive is not None:
                _add(lambda: _store().add_zip(name, archive.getvalue(), me, policy, public))
        with table_tab:
            photos = st.file_uploader("Photos", type=list(IMAGE_EXTENSIONS),
                                      accept_multiple_files=True, key="photoset_photos")
            if photos:
                labelled = _label_table(photos)
                missing = [f.name for f, c in zip(photos, labelled["class"]) if pd.isna(c)]
                if missing:
                    named = ", ".join(literal(n) for n in missing[:UNLABELLED_NAMED]) + (" …" if len(missing) > UNLABELLED_NAMED else "")
                    st.caption(f"{len(missing)} photo(s) without a class yet: {named}. Choose a class for each to add them.")
                if st.button("Add these photos", key="photoset_add_photos", disabled=bool(missing)):
                    rows = list(zip(photos, labelled["class"]))
                    _add(lambda: _store().add_photos(name, [(f.name, f.getvalue(), c) for f, c in rows], me, policy, public))


def _label_table(photos: list) -> pd.DataFrame:
    """The table where each uploaded photo gets its class; returns it as edited.

    The editor keeps edits by row number, so a photo removed or added would shift the
    classes onto other photos or drop them all. Each class is kept per upload (its file id)
    instead, and the rows are indexed by those ids: when the photos change the editor
    starts afresh from the kept classes."""
    kept = state.class_of or {}
    ids = [f.file_id for f in photos]
    table = pd.DataFrame({"photo": [f.name for f in photos],
                          "class": pd.array([kept.get(i) for i in ids], dtype="string")}, index=ids)
    labelled = st.data_editor(table, key="photoset_labels", hide_index=True, width="stretch", column_config={
        "photo": st.column_config.TextColumn("Photo", disabled=True),
        "class": st.column_config.SelectboxColumn("Class", options=list(CLASSES), required=True)})
    state.class_of = {i: c for i, c in zip(ids, labelled["class"]) if not pd.isna(c)}
    return labelled


def _add(action) -> None:
    try:
        with st.spinner("Checking the photos…"):
            photoset = action()
    except UserError as e:
        _refused(e)
        return
    state.choice = photoset.name
    st.success(f"Added {literal(photoset.name)}: {photoset.describe()}.")


# ---- one set: every model, then the chosen one in depth -------------------------------------------


def _owner_controls(photoset: PhotoSet) -> None:
    policy, me = studio_policy(), current_visitor()
    why = None if policy.can_modify(me, photoset.owner) else "Another visitor added this set: only they or an admin can change or delete it."
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    if policy.shared:
        public = left.toggle("Visible to every visitor", value=photoset.public, key=f"photoset_public_{photoset.name}", disabled=why is not None,
                             help=why)
        if public != photoset.public:
            _act(lambda: _store().set_public(photoset.name, public, me, policy))
    if right.button("Delete this set", key="photoset_delete", disabled=why is not None, help=why):
        if _act(lambda: _store().delete(photoset.name, me, policy)):
            state.choice = None
            st.rerun()


def _act(action) -> bool:
    try:
        action()
    except UserError as e:
        _refused(e, "Nothing was changed.")
        return False
    return True


def _every_model(photoset: PhotoSet, choices: dict) -> None:
    rows = []
    for choice in choices.values():
        try:
            result = score(photoset, choice.load, choice.path)
        except (UserError, CheckpointError) as e:
            st.warning(f"{plain(choice.name)}: {plain(str(e))}")
            continue
        rows.append({"Model": unbreakable(choice.name), "Test acc. (%)": choice.test_accuracy,
                     "Photo set acc. (%)": result.accuracy, "Held-out part (%)": result.heldout_accuracy})
    if rows:
        show_table(pd.DataFrame(rows), SCORE_COLUMNS, key="photoset_models")


SCORE_COLUMNS = {"Model": Column("Model", width=200), "Test acc. (%)": Column("Test acc. (%)", "percent", 100),
                 "Photo set acc. (%)": Column("Photo set acc. (%)", "percent", 130),
                 "Held-out part (%)": Column("Held-out part (%)", "percent", 125)}


def photoset_column(name: str) -> Column:
    """How a column of photoset_columns shows in the runs table: an accuracy, as every other."""
    return Column(name, "percent", 6 * len(name) + 16)


def _in_depth(photoset: PhotoSet, choice) -> None:
    try:
        result = score(photoset, choice.load, choice.path)
    except (UserError, CheckpointError) as e:
        st.warning(plain(str(e)))
        return
    st.markdown(f"**{plain(choice.name)}** on this set: {result.accuracy:.1f}% of {result.count} photos"
                + (f" (test set {choice.test_accuracy:.1f}%)" if choice.test_accuracy is not None else ""))
    left, right = st.columns([3, 2])
    left.altair_chart(confusion_chart(result.matrix, list(CLASSES), height=360, title="Confusion matrix (this photo set)"), width="stretch")
    right.altair_chart(per_class_chart(list(CLASSES), result.per_class, height=360, title="Per-class accuracy", decimals=1), width="stretch")
    if not result.wrong:
        st.caption("It got every photo right.")
        return
    st.caption(f"The {min(len(result.wrong), WRONG_SHOWN)} photos it got wrong, most confident first: the photo, and what the model saw.")
    grid = st.columns(4)
    for k, wrong in enumerate(result.wrong[:WRONG_SHOWN]):
        cell = grid[k % 4]
        try:
            cell.image(open_image(original_photo(photoset, wrong.index)), width=112)
        except ImageError:
            cell.caption("(the photo cannot be shown)")
        seen = np.kron(wrong.seen, np.ones((SEEN_SCALE, SEEN_SCALE), np.uint8))
        cell.image(seen, caption=f"{CLASSES[wrong.true]}, taken for {CLASSES[wrong.predicted]} {wrong.probability:.0%}", width=112)


def _finetune(photoset: PhotoSet, choice) -> None:
    """Fine-tune the chosen model on the set's training part, as `train --from CHECKPOINT
    --photos SET` does: a run queued on the Train page, measured on the held-out part."""
    if choice.path is None:  # an uploaded checkpoint lives only in this session
        return
    st.markdown(f"**Fine-tune {plain(choice.name)} on this set**")
    st.caption(f"{FINETUNE_EPOCHS} more epochs at {FINETUNE_LR_FACTOR:g}x the learning rate it was trained with; "
               f"{PHOTO_BATCH_SHARE:.0%} of every batch comes from the set's training part ({1 - HELDOUT_FRACTION:.0%} of each "
               "class), and each epoch reports the accuracy on the held-out part beside the test set's.")
    if not st.button("Fine-tune", key="photoset_finetune", icon=":material/model_training:"):
        return
    visitor, policy = current_visitor(), studio_policy()
    try:
        _store().get(photoset.name, visitor, policy)  # checked again on the server: still there, still this visitor's to use
        config, _ = prepare_sources(finetune_config(choice.path, {"photos": photoset.name,
                                                                   "name": f"{choice.name} + {photoset.name}"[:MAX_NAME_LENGTH]}))
        run_id = run_manager().submit(config, name=config.name, visitor=visitor)
    except (UserError, CheckpointError) as e:
        _refused(e, "Nothing was started.")
        return
    TrainState().selected_run = run_id  # the Train page opens on it
    st.success(f"Queued run {run_id}: {plain(choice.name)} fine-tuned on {literal(photoset.name)}.")
    st.page_link("app_pages/train.py", label="Watch it train", icon=":material/monitoring:")


def photoset_section(choices: dict, chosen: str) -> None:
    """The Predict page's photo-set section. `choices`: the page's models by label (each with
    name, test_accuracy, load and path); `chosen`: the label of the model picked above."""
    st.subheader("Your own photos")
    st.caption("A photo set is your own labelled photos: every model's accuracy on them beside its test-set accuracy, "
               "and what the chosen model gets wrong. Each set keeps 30% of each class apart (its held-out part) for "
               "measuring a model fine-tuned on the rest.")
    _add_form()
    sets = {s.name: s for s in _visible_sets()}
    if not sets:
        st.caption("No photo set yet: add one above.")
        return
    if state.choice not in sets:
        state.choice = None
    name = st.selectbox("Photo set", list(sets), key=PhotoSetState.choice.key)
    photoset = sets[name]
    st.caption(f"{photoset.describe()} · content hash {photoset.sha256[:12]} · "
               f"{'public' if photoset.public else 'private'}")
    _owner_controls(photoset)
    _every_model(photoset, choices)
    _in_depth(photoset, choices[chosen])
    _finetune(photoset, choices[chosen])


# ---- Compare: a column per set ------------------------------------------------------------------


def photoset_columns(frame: pd.DataFrame, weights: dict[str, Path | None]) -> tuple[pd.DataFrame, list[str]]:
    """`frame` (a row per Compare entry, its key in 'id') with a column "accuracy on <set>"
    per visible set, for the entries with weights; and those columns' names. Scored only
    when the visitor asks (a toggle): each model on each set, cached per set hash and checkpoint."""
    sets = _visible_sets()
    if not sets or not st.toggle("Accuracy on my photo sets", key="photoset_columns",
                                 help="Scores every listed model on each of your photo sets (once per model and set)."):
        return frame, []
    frame = frame.copy()
    added = []
    for photoset in sets:
        column = f"accuracy on {photoset.name} (%)"
        values = []
        for key in frame["id"]:
            path = weights.get(key)
            try:
                values.append(score(photoset, None, path).accuracy if path is not None else None)
            except (UserError, CheckpointError):
                values.append(None)
        frame[column] = pd.array(values, dtype="Float64")
        added.append(column)
    return frame, added
