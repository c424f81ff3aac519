"""What a trained model gets right and wrong: confusion matrix, per-class accuracy,
mistakes, and what differs between runs' configs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import CLASSES, FashionMNIST, normalize
from .scoring import predict_dataset

NUM_CLASSES = len(CLASSES)


@dataclass
class Analysis:
    """A model's test-set predictions, and what follows from them."""

    labels: np.ndarray  # (N,) true classes
    probabilities: np.ndarray  # (N, 10)
    matrix: list[list[int]]  # [true][predicted] counts

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(1)

    @property
    def per_class_accuracy(self) -> list[float]:
        return per_class_accuracy(self.matrix)

    @property
    def accuracy(self) -> float:
        return 100.0 * float((self.predictions == self.labels).mean())

    def mistakes(self, true_class: int, predicted_class: int, limit: int = 24) -> list[int]:
        """Test-set indices of `true_class` items predicted as `predicted_class`, most
        confident mistakes first."""
        hits = np.flatnonzero((self.labels == true_class) & (self.predictions == predicted_class))
        order = np.argsort(-self.probabilities[hits, predicted_class], kind="stable")
        return hits[order][:limit].tolist()


def confusion_matrix(labels, predictions, num_classes: int = NUM_CLASSES) -> list[list[int]]:
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    predictions = torch.as_tensor(np.asarray(predictions), dtype=torch.int64)
    counts = torch.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes).tolist()


def per_class_accuracy(matrix: list[list[int]]) -> list[float]:
    """Percent of each true class predicted correctly (NaN for a class with no items)."""
    out = []
    for i, row in enumerate(matrix):
        total = sum(row)
        out.append(100.0 * row[i] / total if total else float("nan"))
    return out


def analyze(model: nn.Module, data: FashionMNIST) -> Analysis:
    probabilities = predict_dataset(model, normalize(data.test_images)).numpy()
    labels = data.test_labels.numpy()
    return Analysis(labels, probabilities, confusion_matrix(labels, probabilities.argmax(1)))


def config_differences(configs: dict[str, dict], ignore=("name", "extra")) -> dict[str, dict[str, object]]:
    """{field: {run: value}} for every field whose value is not the same in all runs."""
    fields = sorted({f for c in configs.values() for f in c} - set(ignore))
    diffs = {}
    for f in fields:
        values = {run: c.get(f) for run, c in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            diffs[f] = values
    return diffs


def describe_differences(diffs: dict[str, dict[str, object]]) -> str:
    """A sentence: 'only lr differs: 0.01 vs 0.1' or 'model, lr differ: ...'."""
    if not diffs:
        return "the configs are identical"
    parts = [f"{f}: {' vs '.join(str(v) for v in values.values())}" for f, values in diffs.items()]
    head = f"only {next(iter(diffs))} differs" if len(diffs) == 1 else f"{len(diffs)} settings differ"
    return f"{head}: " + "; ".join(parts) if len(diffs) > 1 else f"{head}: {parts[0].split(': ', 1)[1]}"
