"""Synthetic photos of training images mixed into training (TrainConfig.synthetic_photos, issue 20):
what they are, that they are made once and then read from the cache, that a damaged cache is
made again, and that a run trains on them and scores their held-out part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist_core.images.data import FashionMNIST, normalize
from fmnist_core.images.photo_synth import synth_photos
from fmnist_core.modeling.config import ConfigError, TrainConfig
from fmnist_core.training import photo_data as photo_data_module
from fmnist_core.training.engine import fit
from fmnist_core.training.photo_data import SYNTHETIC_SEED, synthetic_photo_data
from fmnist_core.use.inference import open_image, to_model_input
from fmnist_core.use.scoring import evaluate

COUNT = 40


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def cache_files(runs):
    return sorted((runs / ".cache").glob("synthetic-photos-*.safetensors"))


def test_synthetic_photos_are_predicts_view_of_phone_photos_of_the_first_training_images(real_data, runs):
    made = synthetic_photo_data(real_data.train_images, real_data.train_labels, COUNT)
    assert made.record()["train"] + made.record()["heldout"] == COUNT  # every item found in these 40
    assert 8 <= len(made.heldout_labels) <= 16  # 30% of each class, rounded per class
    images = torch.cat([made.train_images, made.heldout_images])
    labels = torch.cat([made.train_labels, made.heldout_labels])
    assert images.dtype == torch.uint8 and images.shape == (COUNT, 28, 28)
    assert sorted(labels.tolist()) == sorted(real_data.train_labels[:COUNT].tolist())
    # the first chunk's first photo, made as `photos synth` makes it, is one of the inputs, exactly
    seed = int(np.random.SeedSequence(SYNTHETIC_SEED).spawn(1)[0].generate_state(1)[0])
    first = synth_photos(real_data.train_images[:1].numpy(), real_data.train_labels[:1].numpy(), seed=seed)[0]
    expected = torch.from_numpy(to_model_input(open_image(first.jpeg)))
    assert any(torch.equal(expected, image) for image in images)
    # and photos are not the 28x28 items: mean absolute difference of several grey levels
    originals = real_data.train_images[:COUNT].float()
    assert (images.float().mean() - originals.mean()).abs() < 40
    assert min((image.float() - originals).abs().mean(dim=(1, 2)).min() for image in images[:5]) > 5


def test_synthetic_photos_are_made_once_then_read_from_the_cache(real_data, runs, monkeypatch):
    first = synthetic_photo_data(real_data.train_images, real_data.train_labels, COUNT)
    assert len(cache_files(runs)) == 1

    def never(*args, **kwargs):
        raise AssertionError("made again instead of read from the cache")

    monkeypatch.setattr(photo_data_module, "synth_photos", never)
    again = synthetic_photo_data(real_data.train_images, real_data.train_labels, COUNT)
    assert again.hash == first.hash and torch.equal(again.train_images, first.train_images)
    # other images are another set, with a cache file of their own
    monkeypatch.undo()
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(runs))
    other = synthetic_photo_data(real_data.train_images[100:], real_data.train_labels[100:], 12)
    assert other.hash != first.hash and len(cache_files(runs)) == 2


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(path.read_bytes()[:300]),  # cut short
    lambda path: path.write_bytes(b"\0" * 64),  # not safetensors
    lambda path: path.write_bytes(path.read_bytes() + b"x" * 200_000),  # grown past its bound
])
def test_a_damaged_cache_is_made_again_not_trusted(real_data, runs, damage):
    first = synthetic_photo_data(real_data.train_images, real_data.train_labels, 12)
    [path] = cache_files(runs)
    damage(path)
    again = synthetic_photo_data(real_data.train_images, real_data.train_labels, 12)
    assert again.hash == first.hash and torch.equal(again.heldout_images, first.heldout_images)


def test_a_run_with_synthetic_photos_trains_on_them_and_scores_their_held_out_part(real_data, runs):
    small = FashionMNIST(real_data.train_images[:600], real_data.train_labels[:600],
                         real_data.test_images[:200], real_data.test_labels[:200], "first 600")
    config = TrainConfig(model="cnn_a", epochs=1, batch_size=64, lr=0.05, threads=1, synthetic_photos=COUNT)
    result = fit(config, data=small)
    record = result.history[-1]
    made = synthetic_photo_data(small.train_images, small.train_labels, COUNT)  # the same set, from its cache
    scored = evaluate(result.model, normalize(made.heldout_images), made.heldout_labels)
    assert record["photo_accuracy"] == pytest.approx(scored["accuracy"], abs=1e-6)  # the held-out part, as trained
    assert record["photo_loss"] == pytest.approx(scored["loss"], rel=1e-4)
    # with a validation split, the photos are of training images only
    fit(TrainConfig(**{**config.__dict__, "validation": 100}), data=small)
    assert len(cache_files(runs)) == 2  # another 40 images than the first 40 of all 600


def test_synthetic_photos_and_a_photo_set_are_not_mixed():
    with pytest.raises(ConfigError, match="either a photo set"):
        TrainConfig(synthetic_photos=500, photos="my_photos").validate()
    with pytest.raises(ConfigError, match="synthetic_photos"):
        TrainConfig(synthetic_photos=20_001).validate()
