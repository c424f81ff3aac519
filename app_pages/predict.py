"""Predict: draw or upload an item, see the 28x28 input the model sees, and its probabilities."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from fmnist_core.formats.checkpoint import CheckpointError, load_checkpoint_bytes
from fmnist_core.images.data import CLASSES
from fmnist_core.images.photo import Unsure, find_item, mask_overlay
from fmnist_core.store.catalog import list_checkpoints
from fmnist_core.use.inference import BLANK_MESSAGE, IMAGE_EXTENSIONS, ImageError, Prediction, open_image, predict_images, to_model_input
from ui.charts import probability_chart
from ui.every_model import ModelAnswer, answers_frame, probability_heatmap, unique_names
from ui.explain_panel import explain_controls, explain_panel
from ui.page_state import PageState, SessionKey
from ui.photoset_panel import photoset_section
from ui.predict_models import Choice, photo_model_to_suggest, verdict_line
from ui.state import cached_model, dataset, run_manager
from ui.text import plain

CANVAS_PX = 280  # 10x the model's input, so strokes look like Fashion-MNIST's after scaling
# Streamlit refuses larger uploads itself (and says so in the drop zone): the one limit,
# set in .streamlit/config.toml. Our decoder gets the same number, so the two agree.
UPLOAD_LIMIT_BYTES = st.get_option("server.maxUploadSize") * 2**20


# What find_item is unsure about, in words: shown above the answer, never instead of it.
UNSURE_TEXT = {
    Unsure.NO_CLEAR_ITEM: "No clear item: little stands out from the background, so this answer is a guess. "
                          "Try a plainer surface or more light.",
    Unsure.SEVERAL_ITEMS: "Several items: only the largest (tinted red) is classified. Photograph one item at a time.",
    Unsure.TOUCHES_EDGE: "The item touches the edge of the photo: part of it may be cut off. Step back a little.",
}


class PredictState(PageState):
    canvas_version = SessionKey[int](0)  # Clear draws a new canvas: a new key is the canvas's only clear
    example_index = SessionKey[int | None](None)  # the test-set example shown
    model_choice = SessionKey[str | None](None)  # the Model menu's value (its widget key)


state = PredictState()
st.title("Predict")
st.caption("Draw an item, upload a photo or take one with the camera. The item is found against its background "
           "and turned into what the model was trained on: grayscale, light item on black, cropped to the item, "
           "scaled and centred in 28x28.")

# ---- which model(s) -------------------------------------------------------------------------
entries = list_checkpoints(run_manager().store)  # identical files listed once
names = unique_names([entry.name for entry in entries])
choices = {}
for entry, name in zip(entries, names):
    try:
        cached_model(str(entry.path))  # loaded (once per file version) to find what only loading finds
    except CheckpointError as e:  # e.g. NaN weights: skip that file, don't fail the page
        st.warning(f"Skipped {plain(entry.label)}: {plain(str(e).replace(str(entry.path), 'its checkpoint'))}")
        continue
    choices[entry.label] = Choice(name, entry.test_accuracy, partial(cached_model, str(entry.path)), entry.path, entry.trained_on_photos)
with st.expander("Use a checkpoint file (.safetensors)"):
    upload = st.file_uploader("Checkpoint", type=["safetensors"], key="ckpt_upload",
                              help="A model.safetensors saved by Fashion-MNIST Studio. Never unpickled: safe to load.")
    if upload is not None:
        try:
            loaded = load_checkpoint_bytes(upload.getvalue(), upload.name)
            accuracy = loaded.metadata["metrics"].get("test_accuracy")
            choices = {f"{upload.name} · {loaded.name} (uploaded)": Choice(f"{upload.name} (uploaded)", accuracy, lambda: loaded.model), **choices}
            st.success(f"Loaded {plain(upload.name)}: {loaded.name}, {loaded.metadata['params']:,} parameters.")
        except CheckpointError as e:
            st.error(f"Cannot use this checkpoint: {plain(str(e))}")  # the message holds the file name
if not choices:
    st.warning("No trained model yet. Train one on the Train page (or run `make run`, which ships pretrained ones).")
    st.stop()

pick, every = st.columns([3, 1], vertical_alignment="bottom")
chosen = pick.selectbox("Model", list(choices), key=PredictState.model_choice.key)
compare_all = every.toggle("Every model", key="compare_all", help="Run the same input through every available model: a row per model.")
active = list(choices.values()) if compare_all else [choices[chosen]]
explain_controls(choices[chosen].load(), choices[chosen].path, chosen)


def predict_all(model_input: np.ndarray) -> list[tuple[Choice, Prediction]]:
    return [(choice, predict_images(choice.load(), [model_input])[0]) for choice in active]


def show_result(image, heading: str = "", truth: str | None = None, prepared: bool = False,
                verdict=None) -> list[tuple[Choice, Prediction]] | None:
    """One input: preprocess it (unless `prepared`: already a 28x28 model input), predict
    with the active model(s), and show the 28x28 input once beside the answers. `verdict`:
    a container elsewhere on the page that gets the one-line answer (Draw's, above the
    canvas). Panels about one input (e.g. explanations) belong at the end of this function."""
    try:
        model_input = image if prepared else to_model_input(image)
    except ImageError as e:
        st.info(str(e).capitalize())
        return None
    results = predict_all(model_input)
    line = verdict_line(results, truth)
    if verdict is not None:  # the answer is shown there: not twice
        verdict.markdown(line)
        line = ""
    left, right = st.columns([1, 3])
    left.image(model_input, caption="what the model sees (28x28)", width=112, clamp=True)
    if heading or line:
        right.markdown(f"{heading}{line}")
    if len(results) == 1:
        prediction = results[0][1]
        right.altair_chart(probability_chart(list(CLASSES), prediction.probabilities, height=220), width="stretch")
        right.caption(f"model call: {prediction.milliseconds:.2f} ms")
        with left:
            explain_panel(results[0][0].load(), model_input)
    else:  # a row per model, then their probabilities as one heatmap: readable from 2 models to 30
        answers = [ModelAnswer(choice.name, choice.test_accuracy, prediction.probabilities) for choice, prediction in results]
        st.table(answers_frame(answers, list(CLASSES)))
        st.altair_chart(probability_heatmap(answers, list(CLASSES)), width="stretch")
        st.caption(f"model calls: {sum(p.milliseconds for _, p in results):.1f} ms for {len(results)} models")
    return results


def suggest_photo_model(tab: str) -> None:
    """When one model answers a photo and it never saw a photo in training, name the listed
    model that did, with a button that switches the Model menu to it."""
    best = None if compare_all else photo_model_to_suggest(choices, chosen)
    if best is None:
        return
    hint, switch = st.columns([4, 1], vertical_alignment="center")
    hint.info(f"{plain(choices[chosen].name)} never saw a photo in training. **{plain(choices[best].name)}** did, and names "
              f"photos more often.", icon=":material/photo_camera:")

    def use_photo_model() -> None:
        state.model_choice = best  # a callback: it runs before the Model menu is drawn again

    switch.button("Use it", key=f"use_photo_model_{tab}", on_click=use_photo_model, width="stretch")


def show_photo(image, caption: str) -> None:
    """A photo: the item found in it (tinted) beside the 28x28 input and the answer, and
    what the preprocessing is unsure about as warnings."""
    cut = find_item(image)
    original, result = st.columns([1, 4])
    original.image(mask_overlay(image, cut.mask), caption=f"{caption}, the item found tinted red", width=140)
    with result:
        for reason in cut.unsure:
            st.warning(UNSURE_TEXT[reason])
        if cut.model_input is None:
            st.info(BLANK_MESSAGE.capitalize())
        else:
            show_result(cut.model_input, prepared=True)


# The one-line answer above the canvas stays in view while drawing: sticky under the app's
# header for as long as the canvas column is on screen. So on a phone, where the details
# stack below the canvas, the prediction shows. (Sticky goes on Streamlit's wrapper around
# the keyed container: a sticky element cannot leave its parent, and that parent is the column.)
st.html("<style>[data-testid=stLayoutWrapper]:has(> .st-key-draw_verdict){position:sticky;top:3.75rem;z-index:100;"
        "background:var(--st-background-color,#fff)}.st-key-draw_verdict{min-height:2.2rem;padding:.2rem 0}</style>")
# Photo sets get a tab of their own: below the canvas they would make the Draw tab long enough to
# scroll the canvas under its sticky answer (on a phone, the top strokes then land on the answer).
# A tab's content runs only while it is open (a switch reruns the page), except Draw's and
# Upload's: they hold what the visitor drew or uploaded, which a tab left undrawn would drop. So
# a visit pays for the camera (and its permission prompt), an example's prediction and the photo
# sets only when it opens their tab: a quarter of a second of the page's first paint in Chromium.
draw_tab, upload_tab, camera_tab, examples_tab, photosets_tab = st.tabs(
    ["Draw", "Upload", "Camera", "Test-set examples", "Photo sets"], key="predict_tab", on_change="rerun")

with draw_tab:
    @st.fragment
    def drawing() -> None:
        """Canvas + prediction in their own fragment: a stroke reruns only this part."""
        canvas_col, result_col = st.columns([2, 3])
        with canvas_col:
            verdict = st.container(key="draw_verdict")
            canvas_area = st.container()
            brush_col, clear_col = st.columns([3, 1], vertical_alignment="bottom")
            brush = brush_col.slider("Brush size", 4, 40, 18, key="brush")
            if clear_col.button("Clear", key="clear_canvas"):
                state.canvas_version += 1
            st.caption("Draw light on dark, like the data set. Fill the shape: Fashion-MNIST items are solid.")
        with canvas_area:
            result = st_canvas(
                stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                width=CANVAS_PX, height=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                key=f"canvas-{state.canvas_version}",
            )
        with result_col:
            pixels = result.image_data if result is not None else None
            if pixels is None or not np.asarray(pixels)[..., :3].any():
                verdict.markdown("Draw an item on the canvas to see the prediction.")
            else:
                show_result(np.ascontiguousarray(np.asarray(pixels)[..., :3]).astype(np.uint8), verdict=verdict)

    drawing()

with upload_tab:
    files = st.file_uploader("Images", type=list(IMAGE_EXTENSIONS), accept_multiple_files=True, key="images",
                             help="PNG, JPEG, WebP, BMP, GIF (first frame) or TIFF, any bit depth; phone photos are scaled "
                                  "down as they are read. A product photo on a plain background works best.")
    if files:
        suggest_photo_model("upload")
    for file in files or []:
        st.markdown(f"##### {plain(file.name)}")
        try:
            image = open_image(file.getvalue(), max_bytes=UPLOAD_LIMIT_BYTES)  # 8-bit, at most ~2k px: safe to show
        except ImageError as e:
            st.error(f"{plain(file.name)}: {e}")
            continue
        show_photo(image, "uploaded")

with camera_tab:
    if camera_tab.open:
        shot = st.camera_input("Photograph one item, flat on a bed, a table or the floor", key="camera")
        if shot is not None:
            suggest_photo_model("camera")
            try:
                show_photo(open_image(shot.getvalue(), max_bytes=UPLOAD_LIMIT_BYTES), "camera")
            except ImageError as e:
                st.error(f"The camera's photo cannot be read: {e}")

with examples_tab:
    if examples_tab.open:
        data = dataset()
        chooser, button = st.columns([3, 1], vertical_alignment="bottom")
        index = state.example_index
        # A closed tab drops its widgets' state: the class menu comes back at the example's class.
        shown_class = data.test_item(index)[1] if index is not None else 0
        wanted = chooser.selectbox("Class", CLASSES, index=shown_class, key="example_class")
        # An example is shown at once (the tab was blank until its button was pressed), and a new
        # one when the class changes; the button draws another of the same class.
        if (button.button("Random test image", key="random_example", width="stretch") or index is None
                or shown_class != CLASSES.index(wanted)):
            index = state.example_index = data.random_test_index(CLASSES.index(wanted))
        image, label = data.test_item(index)
        truth = CLASSES[label]
        show_result(image, heading=f"test image #{index} · true class **{truth}** · predicted ", truth=truth, prepared=True)

with photosets_tab:
    if photosets_tab.open:
        photoset_section(choices, chosen)
