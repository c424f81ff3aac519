"""Predict: draw or upload an item, see the 28x28 input the model sees, and its probabilities."""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from fmnist_core.catalog import list_checkpoints
from fmnist_core.checkpoint import CheckpointError, load_checkpoint_bytes
from fmnist_core.data import CLASSES
from fmnist_core.inference import ImageError, classify, open_image, predict_images
from ui.charts import probability_chart
from ui.state import cached_model, dataset, run_manager

CANVAS_PX = 280  # 10x the model's input, so strokes look like Fashion-MNIST's after scaling
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]

st.title("Predict")
st.caption("Draw an item or upload a photo. The image is turned into what the model was trained on: "
           "grayscale, light item on black, cropped to the item, scaled and centred in 28x28.")

# ---- which model(s) -------------------------------------------------------------------------
entries = list_checkpoints(run_manager().store)
models = {}
for entry in entries:
    try:
        models[entry.label] = cached_model(str(entry.path))
    except CheckpointError as e:  # e.g. NaN weights: only loading finds them; skip, don't fail the page
        st.warning(f"Skipped {entry.label}: {str(e).replace(str(entry.path), 'its checkpoint')}")
with st.expander("Use a checkpoint file (.safetensors)"):
    upload = st.file_uploader("Checkpoint", type=["safetensors"], key="ckpt_upload",
                              help="A model.safetensors saved by Fashion-MNIST Studio. Never unpickled: safe to load.")
    if upload is not None:
        try:
            loaded = load_checkpoint_bytes(upload.getvalue(), upload.name)
            models = {f"{upload.name} · {loaded.name} (uploaded)": loaded.model, **models}
            st.success(f"Loaded {upload.name}: {loaded.name}, {loaded.metadata['params']:,} parameters.")
        except CheckpointError as e:
            st.error(f"Cannot use this checkpoint: {e}")
if not models:
    st.warning("No trained model yet. Train one on the Train page (or run `make run`, which ships pretrained ones).")
    st.stop()

pick, every = st.columns([3, 1])
chosen = pick.selectbox("Model", list(models), key="model_choice")
compare_all = every.toggle("Every model", key="compare_all", help="Run the same input through every available model, side by side.")
active = models if compare_all else {chosen: models[chosen]}


def show_result(image, caption: str = "", truth: str | None = None, prepared: bool = False, stacked: bool = False) -> None:
    """Preprocess (unless `prepared`: already a 28x28 data-set image), predict with each
    active model, and show the 28x28 input beside the class probabilities."""
    columns = st.columns(len(active)) if len(active) > 1 else [st.container()]
    for (label, model), column in zip(active.items(), columns):
        with column:
            try:
                model_input, prediction = (image, predict_images(model, [image])[0]) if prepared else classify(model, image)
            except ImageError as e:
                st.info(str(e).capitalize())
                return
            side_by_side = len(active) == 1 and not stacked
            left, right = st.columns([1, 3]) if side_by_side else (st.container(), st.container())
            left.image(model_input, caption="what the model sees (28x28)", width=140, clamp=True)
            verdict = f"**{prediction.label}** · {prediction.probability:.1%}"
            if truth is not None:
                verdict += " ✓" if prediction.label == truth else f" ✗ (true: {truth})"
            right.markdown(f"{caption}{verdict}" + (f"  \n`{label}`" if len(active) > 1 else ""))
            right.altair_chart(probability_chart(list(CLASSES), prediction.probabilities), width="stretch")
            right.caption(f"model call: {prediction.milliseconds:.2f} ms")


draw_tab, upload_tab, examples_tab = st.tabs(["Draw", "Upload", "Test-set examples"])

with draw_tab:
    @st.fragment
    def drawing() -> None:
        """Canvas + prediction in their own fragment: a stroke reruns only this part."""
        controls, canvas_col, result_col = st.columns([1, 2, 2])
        brush = controls.slider("Brush size", 4, 40, 18, key="brush")
        if controls.button("Clear", key="clear_canvas"):
            st.session_state["canvas_version"] = st.session_state.get("canvas_version", 0) + 1
        controls.caption("Draw light on dark, like the data set. Fill the shape: Fashion-MNIST items are solid.")
        with canvas_col:
            result = st_canvas(
                stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                width=CANVAS_PX, height=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                key=f"canvas-{st.session_state.get('canvas_version', 0)}",
            )
        with result_col:
            pixels = result.image_data if result is not None else None
            if pixels is None or not np.asarray(pixels)[..., :3].any():
                st.info("Draw an item on the canvas to see the prediction.")
            else:
                show_result(np.ascontiguousarray(np.asarray(pixels)[..., :3]).astype(np.uint8), stacked=True)

    drawing()

with upload_tab:
    files = st.file_uploader("Images", type=UPLOAD_TYPES, accept_multiple_files=True, key="images",
                             help="PNG, JPEG, WebP, BMP or GIF (first frame), up to 10 MB each. A product photo on a plain background works best.")
    for file in files or []:
        st.markdown(f"##### {file.name}")
        try:
            image = open_image(file.getvalue())
        except ImageError as e:
            st.error(f"{file.name}: {e}")
            continue
        original, result = st.columns([1, 4])
        original.image(image, caption="uploaded", width=140)
        with result:
            show_result(image)

with examples_tab:
    data = dataset()
    chooser, button = st.columns([3, 1])
    wanted = chooser.selectbox("Class", CLASSES, key="example_class")
    if button.button("Random test image", key="random_example", width="stretch"):
        candidates = np.flatnonzero(data.test_labels.numpy() == CLASSES.index(wanted))
        st.session_state["example_index"] = int(np.random.default_rng().choice(candidates))
    index = st.session_state.get("example_index")
    if index is not None:
        truth = CLASSES[int(data.test_labels[index])]
        show_result(data.test_images[index].numpy(), caption=f"test image #{index} · true class **{truth}** · predicted ", truth=truth, prepared=True)
