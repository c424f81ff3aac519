"""Compare's mistake heatmaps: one batch per grid, kept beside the weights, recomputed when stale."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from fmnist_core.analysis.mistake_maps import MAPS_NAME, mistake_heatmaps
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.use.explain import explain, explain_many
from tests.helpers.paths import ROOT

CNN_C = ROOT / "checkpoints" / "pretrained" / "cnn_c_report"
INDICES, TARGET = [0, 5, 17, 42], 4  # four test images, explained as "Coat"


@pytest.fixture
def checkpoint(tmp_path):
    """A copy of cnn_c's weights in a folder of its own, without a maps file yet."""
    weights = tmp_path / "cnn_c" / "model.safetensors"
    weights.parent.mkdir()
    shutil.copy(CNN_C / "model.safetensors", weights)
    return weights


@pytest.mark.parametrize("method", ["ig", "occlusion", "gradcam"])
def test_one_batch_gives_the_maps_of_one_image_at_a_time(real_data, method):
    model = load_checkpoint(CNN_C).model
    images = real_data.test_images[INDICES].numpy()
    batch = explain_many(model, images, [TARGET, None, TARGET, 9], method)
    for image, target, result in zip(images, [TARGET, None, TARGET, 9], batch):
        alone = explain(model, image, target, method)
        assert result.target == alone.target and result.method == method
        np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-6)
        np.testing.assert_allclose(result.heatmap, alone.heatmap, atol=1e-4)


def test_maps_are_computed_once_then_read_from_the_file(real_data, checkpoint):
    model = load_checkpoint(checkpoint).model
    first = mistake_heatmaps(checkpoint, model, real_data.test_images, INDICES, TARGET)
    expected = np.stack([explain(model, real_data.test_images[i].numpy(), TARGET).heatmap for i in INDICES])
    np.testing.assert_allclose(first, expected, atol=1e-3)  # stored as float16
    path = checkpoint.with_name(MAPS_NAME)
    assert path.is_file()
    # A hit is served from the file: maps written there (same key) come back as they are.
    data = path.read_bytes()
    tensors = load(data)
    tensors["heatmaps"] = torch.full_like(tensors["heatmaps"], 0.25)
    path.write_bytes(save(tensors, metadata=_metadata(data)))
    again = mistake_heatmaps(checkpoint, model, real_data.test_images, INDICES[::-1], TARGET)
    assert again.shape == (4, 28, 28) and (again == 0.25).all()
    # A new (index, class) is computed and added; the ones stored stay.
    more = mistake_heatmaps(checkpoint, model, real_data.test_images, [INDICES[0], 99], TARGET)
    assert (more[0] == 0.25).all() and not (more[1] == 0.25).all()
    assert len(load(path.read_bytes())["indices"]) == 5


@pytest.mark.parametrize("damage", ["truncated", "not safetensors", "other weights", "out of range"])
def test_a_stale_or_damaged_file_is_recomputed_and_rewritten(real_data, checkpoint, damage):
    model = load_checkpoint(checkpoint).model
    good = mistake_heatmaps(checkpoint, model, real_data.test_images, INDICES, TARGET)
    path = checkpoint.with_name(MAPS_NAME)
    data = path.read_bytes()
    tensors = load(data)
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not safetensors":
        path.write_bytes(b"\x00" * 64)
    elif damage == "other weights":  # same file, another checkpoint version: its key no longer matches
        tensors["heatmaps"] = torch.full_like(tensors["heatmaps"], 0.25)
        path.write_bytes(save(tensors, metadata=_metadata(data)))
        with open(checkpoint, "ab") as f:
            f.write(b" ")  # safetensors ignores trailing bytes; the SHA-256 changes
    else:
        tensors["heatmaps"] = torch.full_like(tensors["heatmaps"], 3.0)
        path.write_bytes(save(tensors, metadata=_metadata(data)))
    again = mistake_heatmaps(checkpoint, model, real_data.test_images, INDICES, TARGET)
    np.testing.assert_allclose(again, good, atol=1e-6)
    assert not (again == 0.25).all()
    np.testing.assert_allclose(mistake_heatmaps(checkpoint, None, real_data.test_images, INDICES, TARGET), good, atol=1e-6)


def _metadata(data: bytes) -> dict:
    return json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]


@pytest.mark.parametrize("model", ["cnn_c_report", "resnet_fm_best", "resnet_fm_photos"])
def test_the_shipped_maps_are_current_and_what_the_code_makes_now(model, real_data):
    """The shipped files are keyed by MAPS_VERSION, not by the source's hash (every comment
    made them stale, and Compare then rewrote a tracked file). The cost of a number: a change
    to the maps must bump it. This recomputes stored maps and compares, so it cannot slip by."""
    from fmnist_core.analysis.mistake_maps import _key, _read

    weights = ROOT / "checkpoints" / "pretrained" / model / "model.safetensors"
    stored = _read(weights.with_name(MAPS_NAME), _key(weights, "ig", len(real_data.test_images)), len(real_data.test_images))
    assert stored, "the shipped maps are stale: rebuild them (README, Explain and export) or bump MAPS_VERSION"
    pairs = list(stored)
    picked = [pairs[0], pairs[len(pairs) // 2], pairs[-1]]
    fresh = explain_many(load_checkpoint(weights).model, real_data.test_images[[i for i, _ in picked]].numpy(),
                         [t for _, t in picked], "ig")
    for pair, result in zip(picked, fresh):
        assert np.abs(result.heatmap - stored[pair].astype(np.float32)).max() < 0.02, pair


def test_a_full_file_still_returns_every_map_asked_for(real_data, checkpoint, monkeypatch):
    """Trimming the file to MAX_MAPS dropped maps this same call had found in it: a KeyError on
    Compare once a checkpoint's file was full (the review reproduced it at 86 pairs)."""
    from fmnist_core.analysis import mistake_maps

    monkeypatch.setattr(mistake_maps, "MAX_MAPS", 5)
    model = load_checkpoint(checkpoint).model
    first = mistake_heatmaps(checkpoint, model, real_data.test_images, INDICES, TARGET)
    mistake_heatmaps(checkpoint, model, real_data.test_images, [100, 101, 102], TARGET)  # the file keeps 5 of 7
    again = mistake_heatmaps(checkpoint, model, real_data.test_images, [*INDICES, 103], TARGET)
    assert np.allclose(again[:4], first, atol=1e-3) and again.shape == (5, 28, 28)


def test_the_app_never_rewrites_a_shipped_models_files(real_data, monkeypatch):
    """The shipped maps and ONNX facts are tracked by git: when they do not match (another
    torch, a new MAPS_VERSION) the app computes what it shows but leaves the files alone."""
    from fmnist_core.analysis import export_facts, mistake_maps

    weights = CNN_C / "model.safetensors"
    before = {name: (CNN_C / name).read_bytes() for name in (MAPS_NAME, export_facts.FACTS_NAME)}
    monkeypatch.setattr(mistake_maps, "_code", lambda: {"maps_version": -1})  # the stored maps no longer match
    monkeypatch.setattr(export_facts, "_exporter", lambda: {"export_version": -1})
    maps = mistake_heatmaps(weights, load_checkpoint(weights).model, real_data.test_images, INDICES[:2], TARGET)
    facts = export_facts.onnx_facts(weights, real_data, 200)
    assert maps.shape == (2, 28, 28) and facts.checked_images == 200
    assert {name: (CNN_C / name).read_bytes() for name in before} == before
