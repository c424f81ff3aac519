"""Photo-like augmentation (fmnist_core.images.photo_augment): shape, range, seeding, cost, config."""

import time

import pytest
import torch
from torch import nn

from fmnist_core.images.data import MEAN, STD, normalize
from fmnist_core.images.photo_augment import photo_augment
from fmnist_core.modeling.config import ConfigError, TrainConfig
from fmnist_core.training.engine import build_model, fit

LOW, HIGH = (0 - MEAN) / STD, (1 - MEAN) / STD  # the normalised range of [0, 1] images


def batch(tiny_data, n=64):
    return normalize(tiny_data.train_images[:n])  # (n, 1, 28, 28)


def test_keeps_shape_dtype_and_range_and_changes_every_image(tiny_data):
    x = batch(tiny_data)
    out = photo_augment(x, torch.Generator().manual_seed(0), 1.0)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert out.min() >= LOW - 1e-5 and out.max() <= HIGH + 1e-5
    assert torch.isfinite(out).all()
    changed = (out - x).abs().flatten(1).mean(1)  # (n,) mean change per image, normalised units
    assert (changed > 0.02).all()
    assert torch.equal(x, batch(tiny_data))  # the input is left as it was


def test_strength_scales_the_change_and_zero_is_identity(tiny_data):
    x = batch(tiny_data)
    assert photo_augment(x, torch.Generator().manual_seed(0), 0.0) is x
    change = {s: (photo_augment(x, torch.Generator().manual_seed(0), s) - x).abs().mean().item() for s in (0.25, 1.0)}
    assert 0 < change[0.25] < change[1.0]


def test_same_seed_same_batch_other_seed_other_batch(tiny_data):
    x = batch(tiny_data)
    a = photo_augment(x, torch.Generator().manual_seed(7), 0.5)
    b = photo_augment(x, torch.Generator().manual_seed(7), 0.5)
    c = photo_augment(x, torch.Generator().manual_seed(8), 0.5)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_costs_a_fraction_of_a_training_step(tiny_data):
    """Per batch of 256, the augmentation takes well under a training step of the `fast`
    recipe's model (README "Photos" has the images/s). CPU time of this thread, not wall
    time, so that other processes on the machine do not count."""
    x = normalize(tiny_data.train_images[:256])
    y = torch.zeros(256, dtype=torch.int64)
    model = build_model(TrainConfig(model="fast_cnn_v2", width=16))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    def fastest(fn, repeats=5):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
        return min(times)

    augment_s = fastest(lambda: photo_augment(x, generator, 1.0))
    step_s = fastest(step)
    assert augment_s < 0.5 * step_s, (augment_s, step_s)


def test_trains_and_is_range_checked(tiny_data):
    result = fit(TrainConfig(model="cnn_a", epochs=1, batch_size=64, photo_augment=0.5, threads=1), data=tiny_data)
    assert result.status == "finished" and result.history[0]["train_loss"] > 0
    with pytest.raises(ConfigError, match=r"photo_augment: 1.5 is out of range"):
        TrainConfig(photo_augment=1.5).validate()
