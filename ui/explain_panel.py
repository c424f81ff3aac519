"""Explain and export, Streamlit side: the heatmap beside a shown input, the pickers that
steer it, the ONNX download (Predict), and mistakes' heatmaps and the model card (Compare).

The ML is in fmnist_core.use.explain / export / model_card; this module only lays it out.
The pickers are drawn once per page (explain_controls) and read by every panel, so a
page that shows several inputs needs no widget per input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from fmnist_core.analysis.export_facts import checked_onnx, onnx_facts
from fmnist_core.analysis.mistake_maps import mistake_heatmaps
from fmnist_core.analysis.model_card import ExportFacts, build_card
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.images.data import CLASSES
from fmnist_core.use.explain import METHODS, ExplainError, explain, methods_for, overlay
from ui.state import cached_model, dataset, run_analysis

TOP_CLASS = "the predicted class"
METHOD_KEY, TARGET_KEY = "explain_method", "explain_target"
UI_CHECK_IMAGES = 1000  # test images a download is checked on (the CLI checks all 10,000)
MISTAKE_SCALE = 3


def explain_controls(model, checkpoint: Path | None, label: str) -> None:
    """The method and class pickers for every heatmap on the page, and the selected
    model's ONNX file to download (checkpoint None: an uploaded model, nothing to offer)."""
    methods = methods_for(model)
    method_col, target_col, download_col = st.columns([2, 2, 1])
    method_col.radio("Explain with", methods, format_func=METHODS.get, horizontal=True, key=f"{METHOD_KEY}_{len(methods)}",
                     help="Integrated Gradients and Occlusion work for every model; Grad-CAM looks at the last conv layer.")
    target_col.selectbox("Heatmap of", [TOP_CLASS, *CLASSES], key=TARGET_KEY,
                         help="Why the model chose a class, or why not another: pick a class to ask \"why not Coat?\".")
    if checkpoint is not None:
        download_col.download_button(
            "ONNX file", lambda: _onnx_file(str(checkpoint), os.path.getmtime(checkpoint)),
            file_name=f"{file_stem(label.split(' · ')[0])}.onnx", mime="application/octet-stream", on_click="ignore",
            icon=":material/download:", key="download_onnx",
            help=f"This model for onnxruntime: input 'image' (N, 1, 28, 28) normalised, output 'probabilities'; class "
                 f"names and preprocessing in its metadata. Checked against PyTorch on {UI_CHECK_IMAGES:,} test images.",
        )


def file_stem(name: str) -> str:
    """A run's name (user text) as a safe download file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "model"


def explain_panel(model, model_input: np.ndarray) -> None:
    """The heatmap over the 28x28 input, for the class and method picked in explain_controls."""
    methods = methods_for(model)
    method = st.session_state.get(f"{METHOD_KEY}_{len(methods)}") or methods[0]
    wanted = st.session_state.get(TARGET_KEY, TOP_CLASS)
    target = None if wanted in (None, TOP_CLASS) else CLASSES.index(wanted)
    try:
        result = explain(model, model_input, target, method)
    except ExplainError as e:
        st.info(str(e).capitalize())
        return
    st.image(overlay(model_input, result.heatmap, scale=5), width=140,
             caption=f"why {result.target_name} ({METHODS[method]}): red for, blue against")


@st.cache_resource(max_entries=8, show_spinner=False)
def _onnx_file(path: str, mtime: float) -> bytes:
    """A checkpoint's ONNX bytes, checked on test images; once per file version. Its facts are
    kept beside the weights, so the model card does not export it again."""
    onnx = checked_onnx(load_checkpoint(path).model, dataset(), UI_CHECK_IMAGES)
    onnx_facts(Path(path), dataset(), UI_CHECK_IMAGES, onnx)
    return onnx[0]


def model_card_download(weights: Path, title: str) -> None:
    """A button that writes the run's model card (with its ONNX export's checksum) on click."""

    def card() -> str:
        loaded = load_checkpoint(weights)
        facts = onnx_facts(weights, dataset(), UI_CHECK_IMAGES)  # from the file beside the weights once made
        export = ExportFacts(f"{file_stem(title)}.onnx", "onnx", facts.sha256, facts.size_bytes, facts.checked_images,
                             facts.max_difference)
        return build_card(title, loaded.metadata, run_analysis(str(weights)), dataset(), export)

    st.download_button("Model card (Markdown)", card, file_name=f"{file_stem(title)}-model-card.md", mime="text/markdown",
                       on_click="ignore", icon=":material/description:", key="download_model_card",
                       help="Config, data, training time, test accuracy per class, confusion matrix, the command that "
                            "rebuilds it, and the SHA-256 of its ONNX export.")


@st.cache_data(max_entries=64, show_spinner=False)
def _mistake_pictures(path: str, mtime: float, indices: tuple[int, ...], predicted: int) -> list[np.ndarray]:
    images = dataset().test_images[list(indices)].numpy()
    heatmaps = mistake_heatmaps(Path(path), cached_model(path), dataset().test_images, list(indices), predicted)
    return [np.concatenate([_upscaled(image), overlay(image, heat, scale=MISTAKE_SCALE)], axis=0)
            for image, heat in zip(images, heatmaps)]


def _upscaled(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.kron(image, np.ones((MISTAKE_SCALE, MISTAKE_SCALE), np.uint8))[..., None], 3, axis=2)


def mistake_pictures(weights: Path, indices: list[int], predicted: int) -> list[np.ndarray]:
    """Test images `indices`, each above its heatmap for the wrongly predicted class: what the
    model took for `predicted`. One batch for the grid, kept beside the weights (mistake_maps)."""
    return _mistake_pictures(str(weights), os.path.getmtime(weights), tuple(indices), predicted)
