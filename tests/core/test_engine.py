import json
import os
import threading

import pytest
import torch
from torch import nn

from fmnist_core.formats.checkpoint import load_checkpoint, save_checkpoint
from fmnist_core.images.data import augment, normalize
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import create_model
from fmnist_core.modeling.weight_init import INIT_SCHEMES, init_weights
from fmnist_core.training.engine import fit
from fmnist_core.use.scoring import class_probabilities, evaluate

TIMING = {"seconds", "images_per_s", "elapsed_s"}


class Recorder:
    def __init__(self):
        self.events = []
        self.checkpoints = 0

    def on_run_start(self, e):
        self.events.append(("run_start", e))

    def on_batch_end(self, e):
        self.events.append(("batch_end", e))

    def on_epoch_end(self, e):
        self.events.append(("epoch_end", e))

    def on_run_end(self, e):
        self.events.append(("run_end", e))

    def on_checkpoint(self, model, record):
        assert isinstance(model, nn.Module)
        self.checkpoints += 1

    def kinds(self):
        return [k for k, _ in self.events]


def small(**kw):
    base = dict(model="cnn_a", optimizer="adam", lr=0.01, batch_size=32, epochs=3, threads=1)
    return TrainConfig(**{**base, **kw})


def test_fit_learns_and_reports_plain_events(tiny_data):
    rec = Recorder()
    result = fit(small(), data=tiny_data, callbacks=[rec])
    assert result.status == "finished"
    assert len(result.history) == 3
    assert result.history[-1]["test_accuracy"] > 90  # the synthetic classes are easy
    assert result.history[-1]["train_loss_sum"] == pytest.approx(result.history[-1]["train_loss"] * 19, rel=1e-6)
    kinds = rec.kinds()
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and kinds.count("epoch_end") == 3
    assert "batch_end" in kinds and rec.checkpoints == 3
    json.dumps(rec.events)  # plain numbers and strings only


def test_same_seed_same_numbers(tiny_data):
    def numbers(seed):
        history = fit(small(seed=seed, augment=True, model="cnn_c", optimizer="sgd"), data=tiny_data).history
        return [{k: v for k, v in h.items() if k not in TIMING} for h in history]

    first = numbers(1)
    assert numbers(1) == first
    assert numbers(2) != first


def test_divergence_stops_with_a_message(tiny_data):
    rec = Recorder()
    result = fit(small(model="mlp4", optimizer="sgd", lr=10.0, momentum=0.99, init="normal", epochs=5), data=tiny_data, callbacks=[rec])
    assert result.status == "diverged"
    assert "learning rate" in result.message and "too high" in result.message
    assert rec.checkpoints == len(result.history) < 5


def test_stop_flag_ends_the_run_keeping_finished_epochs(tiny_data):
    stop = threading.Event()

    class StopAfterFirst:
        def on_epoch_end(self, record):
            stop.set()

    result = fit(small(epochs=5), data=tiny_data, callbacks=[StopAfterFirst()], stop=stop)
    assert result.status == "stopped" and len(result.history) == 1


@pytest.mark.parametrize("patch", [7, 14])
def test_patching_trains_on_tiles_and_predicts_whole_images(tiny_data, patch):
    result = fit(small(model="mlp4", patch=patch, epochs=2, optimizer="sgd", lr=0.05), data=tiny_data)
    assert result.status == "finished"
    x = torch.randn(5, 1, 28, 28)
    probs = class_probabilities(result.model.eval(), x)
    assert probs.shape == (5, 10)
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_and_schedule_runs(tiny_data, optimizer, schedule):
    lr = 0.05 if optimizer == "sgd" else 0.003
    result = fit(small(optimizer=optimizer, schedule=schedule, lr=lr, epochs=2, label_smoothing=0.1, weight_decay=1e-4), data=tiny_data)
    assert result.status == "finished"
    assert result.history[-1]["test_accuracy"] > 40


def test_schedules_end_where_they_should(tiny_data):
    assert fit(small(schedule="cosine", epochs=2), data=tiny_data).history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert fit(small(schedule="step", epochs=4), data=tiny_data).history[-1]["lr"] == pytest.approx(0.01 * 0.01)


def test_bf16_channels_last_learns_and_saves_like_any_model(tiny_data, tmp_path):
    """The speed options change how the model computes, not what it is: it learns, its
    NHWC weights save (safetensors needs contiguous tensors) and reload to the same outputs."""
    result = fit(small(model="fast_cnn", width=16, optimizer="sgd", lr=0.05, precision="bf16", channels_last=True), data=tiny_data)
    assert result.status == "finished" and result.history[-1]["test_accuracy"] > 90
    assert result.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    loaded = load_checkpoint(save_checkpoint(result.model, tmp_path / "m.safetensors")).model
    x = normalize(tiny_data.test_images[:8])
    assert torch.allclose(class_probabilities(result.model.eval(), x), class_probabilities(loaded, x), atol=1e-5)


def test_validation_split_and_ema(tiny_data):
    result = fit(small(validation=100, ema=0.9), data=tiny_data)
    record = result.history[-1]
    assert "val_accuracy" in record and 0 <= record["val_accuracy"] <= 100
    assert record["val_accuracy"] == round(record["val_accuracy"]) and record["val_accuracy"] > 50  # k of the 100 images, learnt
    assert record["batches"] == 16  # 500 training images left at batch 32


def test_evaluate_matches_a_hand_computation():
    model = create_model("mlp4").eval()
    x, y = torch.randn(50, 1, 28, 28), torch.randint(0, 10, (50,))
    with torch.no_grad():
        logits = model(x)
    got = evaluate(model, x, y)
    assert got["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert got["accuracy"] == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_schemes(scheme):
    torch.manual_seed(0)
    model = create_model("cnn_c")
    before = [p.clone() for p in model.parameters()]
    init_weights(model, scheme)
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert changed == (scheme != "default")
    if scheme == "custom":
        linear = model.classifier[0].weight
        conv = model.features[0].weight
        assert linear.std().item() == pytest.approx(0.01, rel=0.05)
        assert conv.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.15)  # He: sqrt(2 / fan_in)


def test_augmentation_keeps_every_tensor_on_the_images_device():
    """The GPU path, checked without a GPU: on the meta device any CPU tensor mixed into the
    batch (the flip mask, the shift offsets) raises, as it would on CUDA."""
    x = torch.zeros(8, 1, 28, 28, device="meta")
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == (8, 1, 28, 28)


@pytest.mark.parametrize("kept_free", [0, 1])
def test_automatic_threads_use_the_free_cores_but_those_kept_free(tiny_data, kept_free):
    """`threads 0`: the cores not busy elsewhere (threads.choose_threads); the app keeps one for its server."""
    rec = Recorder()
    fit(small(threads=0, epochs=1), data=tiny_data, callbacks=[rec], cores_kept_free=kept_free)
    assert 1 <= rec.events[0][1]["threads"] <= max(1, len(os.sched_getaffinity(0)) - kept_free)
