"""Scoring: a trained model's class probabilities, and accuracy and loss on a data set.

Below the training engine: inference, metrics, explanations, export, bench and the CLI
score models without importing the training loop.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import tiles_per_image, to_patches

EVAL_BATCH = 1000


def outputs_probabilities(model: nn.Module) -> bool:
    """True for the report's cnn_b quirk, whose last layer is already a Softmax."""
    return bool(model.build_args.get("softmax_output")) if hasattr(model, "build_args") else False


def patch_of(model: nn.Module) -> int:
    """Tile size a model was trained on (0 = whole images), from its constructor args."""
    size = getattr(model, "build_args", {}).get("image_size", 28)
    return 0 if size == 28 else size


@torch.inference_mode()
def class_probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) normalised images -> (B, 10) class probabilities.

    A model trained on tiles sees each tile; the image's probabilities are the mean of
    its tiles' probabilities (design.md, patching)."""
    patch = patch_of(model)
    batch = x.shape[0]
    if patch:
        x = to_patches(x, patch)
    out = model(x)
    probs = out if outputs_probabilities(model) else out.softmax(dim=1)
    if patch:
        probs = probs.view(batch, tiles_per_image(patch), -1).mean(dim=1)
    return probs


@torch.inference_mode()
def predict_dataset(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Probabilities (N, 10) for normalised images (N, 1, 28, 28), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        parts = [class_probabilities(model, images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 10)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean negative log-likelihood and accuracy (percent) on normalised images."""
    probs = predict_dataset(model, images)
    labels = labels.cpu()
    nll = -probs.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log().mean().item()
    accuracy = 100.0 * (probs.argmax(1) == labels).float().mean().item()
    return {"loss": nll, "accuracy": accuracy}
