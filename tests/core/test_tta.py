"""Flip test-time augmentation: a model trained with it is scored on the image and its
mirror everywhere it is scored (training's test figures, Predict, `predict`, export,
explanations), so what a user gets is what bench reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmnist_core.formats.checkpoint import CheckpointError, check_model_args, load_checkpoint, save_checkpoint
from fmnist_core.images.data import normalize
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.training.engine import build_model, fit
from fmnist_core.use.explain import explain
from fmnist_core.use.export import TOLERANCE, check_export, export_bytes
from fmnist_core.use.inference import predict_images
from fmnist_core.use.scoring import class_probabilities, evaluate, uses_flip_tta


def tta_model(**kw):
    config = TrainConfig(model="fast_cnn", width=8, tta=True, **kw)
    return build_model(config).eval(), config


def test_a_flip_tta_model_scores_the_mean_of_the_image_and_its_mirror(real_data):
    model, _ = tta_model()
    x = normalize(real_data.test_images[:16])
    plain = class_probabilities(model, x, tta=False)
    mirrored = class_probabilities(model, x.flip(-1), tta=False)
    assert uses_flip_tta(model)
    assert torch.allclose(class_probabilities(model, x), (plain + mirrored) / 2, atol=1e-6)
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the two views differ, so the test can fail


def test_patching_and_tta_together_average_every_tile_of_both_views(real_data):
    model, _ = tta_model(patch=14)
    x = normalize(real_data.test_images[:4])
    both = class_probabilities(model, x)
    expected = (class_probabilities(model, x, tta=False) + class_probabilities(model, x.flip(-1), tta=False)) / 2
    assert torch.allclose(both, expected, atol=1e-6) and torch.allclose(both.sum(1), torch.ones(4), atol=1e-5)


def test_training_reports_the_tta_accuracy_and_the_checkpoint_keeps_it(tiny_data, tmp_path):
    config = TrainConfig(model="fast_cnn", width=8, epochs=1, batch_size=32, threads=1, augment=True, tta=True)
    result = fit(config, data=tiny_data)
    test_x, test_y = normalize(tiny_data.test_images), tiny_data.test_labels
    assert result.history[-1]["test_accuracy"] == pytest.approx(evaluate(result.model, test_x, test_y, tta=True)["accuracy"])
    path = save_checkpoint(result.model, tmp_path / "model.safetensors", config.to_dict())
    loaded = load_checkpoint(path).model
    assert uses_flip_tta(loaded) and json.loads(json.dumps(loaded.build_args)) == {"width": 8, "tta": True}
    assert torch.allclose(class_probabilities(loaded.eval(), test_x), class_probabilities(result.model.eval(), test_x), atol=1e-6)


def test_predict_applies_the_models_tta(real_data):
    model, _ = tta_model()
    image = real_data.test_images[0].numpy()
    x = normalize(real_data.test_images[:1])
    expected = (class_probabilities(model, x, tta=False) + class_probabilities(model, x.flip(-1), tta=False)) / 2
    got = predict_images(model, [image])[0]
    assert got.probabilities == pytest.approx(expected[0].tolist(), abs=1e-5)


def test_the_onnx_export_includes_the_flip(real_data):
    model, _ = tta_model()
    images = normalize(real_data.test_images[:200])
    check = check_export(model, export_bytes(model, "onnx"), "onnx", images, real_data.test_labels[:200])
    assert check.max_difference < TOLERANCE


def test_gradcam_of_a_tta_model_averages_the_mirrors_map_flipped_back(real_data):
    model, _ = tta_model()
    image = real_data.test_images[3].numpy()
    heat = explain(model, image, method="gradcam").heatmap
    assert heat.shape == (28, 28) and np.isfinite(heat).all() and np.abs(heat).max() > 0


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_checkpoint_whose_tta_is_not_a_boolean_is_refused(value):
    with pytest.raises(CheckpointError):
        check_model_args("fast_cnn", {"tta": value})
