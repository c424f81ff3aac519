"""Scoring: a trained model's class probabilities, and accuracy and loss on a data set.

Below the training engine: inference, metrics, explanations, export, bench and the CLI
score models without importing the training loop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fmnist_core.images.data import tiles_per_image, to_patches

EVAL_BATCH = 1000


def outputs_probabilities(model: nn.Module) -> bool:
    """True for the report's cnn_b quirk, whose last layer is already a Softmax."""
    return bool(getattr(model, "build_args", {}).get("softmax_output"))


def uses_flip_tta(model: nn.Module) -> bool:
    """Whether the model was trained to be scored on the image and its mirror image."""
    return bool(getattr(model, "build_args", {}).get("tta"))


def patch_of(model: nn.Module) -> int:
    """Tile size a model was trained on (0 = whole images), from its constructor args."""
    size = getattr(model, "build_args", {}).get("image_size", 28)
    return 0 if size == 28 else size


class ImageClassifier(nn.Module):
    """A trained model as one module: (B, 1, 28, 28) normalised images -> (B, 10) class
    probabilities, with the tiling, the flip test-time augmentation and the softmax rule
    inside forward.

    One module, so that what is scored, explained (gradients flow through it) and exported
    (one graph, tiling and TTA included) is the same computation. `log=True` returns
    log-probabilities, computed without underflow for the classes a model rules out,
    which is what an explanation of "why not Coat?" differentiates. `tta` overrides the
    model's own flip TTA (bench reports the accuracy with and without it)."""

    def __init__(self, model: nn.Module, log: bool = False, tta: bool | None = None):
        super().__init__()
        self.model = model
        self.patch = patch_of(model)
        self.takes_probabilities = outputs_probabilities(model)
        self.log = log
        self.tta = uses_flip_tta(model) if tta is None else tta

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.tta:
            return self._scores(image)
        # The image and its mirror in one batch; the prediction is the mean of the two
        # probability vectors, as for tiles.
        both = self._scores(torch.cat([image, image.flip(-1)]))  # (2B, 10)
        return self._mean(both.reshape(2, image.shape[0], -1).transpose(0, 1))

    def _scores(self, image: torch.Tensor) -> torch.Tensor:
        batch = image.shape[0]
        x = to_patches(image, self.patch) if self.patch else image  # (B * k, 1, P, P)
        out = self.model(x)
        if self.takes_probabilities:  # the report's cnn_b: its last layer is already a Softmax
            scores = out.clamp_min(1e-30).log() if self.log else out
        else:
            scores = out.log_softmax(dim=1) if self.log else out.softmax(dim=1)
        if not self.patch:
            return scores
        return self._mean(scores.reshape(batch, tiles_per_image(self.patch), -1))  # (B, k, 10)

    def _mean(self, views: torch.Tensor) -> torch.Tensor:
        """(B, V, 10) scores of V views of each image -> (B, 10): the mean probability
        (for log scores, the log of the mean probability)."""
        if self.log:
            return torch.logsumexp(views, dim=1) - math.log(views.shape[1])
        return views.mean(dim=1)


@torch.inference_mode()
def class_probabilities(model: nn.Module, x: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
    """(B, 1, 28, 28) normalised images -> (B, 10) class probabilities.

    A model trained on tiles sees each tile; the image's probabilities are the mean of
    its tiles' probabilities (design.md, patching). A flip-TTA model also sees the mirror
    image. `tta` None: as the model was trained."""
    return ImageClassifier(model, tta=tta)(x)


@torch.inference_mode()
def predict_dataset(model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH, tta: bool | None = None) -> torch.Tensor:
    """Probabilities (N, 10) for normalised images (N, 1, 28, 28), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        parts = [class_probabilities(model, images[i : i + batch_size].to(device), tta).float().cpu()
                 for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, 10)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tta: bool | None = None) -> dict:
    """Mean negative log-likelihood and accuracy (percent) on normalised images."""
    return score_probabilities(predict_dataset(model, images, tta=tta), labels)


def score_probabilities(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict:
    """evaluate() on probabilities already computed (N, 10): mean NLL and accuracy (percent)."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels).cpu()
    nll = -probs.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log().mean().item()
    accuracy = 100.0 * (probs.argmax(1) == labels).float().mean().item()
    return {"loss": nll, "accuracy": accuracy}
