"""What a trained model gets right and wrong: confusion matrix, per-class accuracy,
mistakes, and what differs between runs' configs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from fmnist_core.base.files import atomic_write_bytes, file_sha256
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.formats.run_files import FileProblem, read_regular_bytes
from fmnist_core.images.data import CLASSES, FashionMNIST, normalize
from fmnist_core.modeling.config import SETTINGS, effective_settings
from fmnist_core.use.scoring import predict_dataset

NUM_CLASSES = len(CLASSES)


@dataclass
class Analysis:
    """A model's test-set predictions, and what follows from them."""

    labels: np.ndarray  # (N,) true classes
    probabilities: np.ndarray  # (N, 10)
    matrix: list[list[int]]  # [true][predicted] counts
    predicted: np.ndarray | None = field(default=None, repr=False)  # (N,) when stored apart (exact, beside float16 probabilities)

    @property
    def predictions(self) -> np.ndarray:
        return self.predicted if self.predicted is not None else self.probabilities.argmax(1)

    @property
    def per_class_accuracy(self) -> list[float]:
        return per_class_accuracy(self.matrix)

    @property
    def accuracy(self) -> float:
        return 100.0 * float((self.predictions == self.labels).mean())

    def mistakes(self, true_class: int, predicted_class: int, limit: int = 24) -> list[int]:
        """Test-set indices of `true_class` items predicted as `predicted_class`, most
        confident mistakes first. Only mistakes: the same class twice gives none."""
        if true_class == predicted_class:
            return []
        hits = np.flatnonzero((self.labels == true_class) & (self.predictions == predicted_class))
        order = np.argsort(-self.probabilities[hits, predicted_class], kind="stable")
        return hits[order][:limit].tolist()


    def confusions(self, true_class: int) -> list[tuple[int, int]]:
        """(predicted class, count) of every other class, most frequent mistake first."""
        row = self.matrix[true_class]
        others = [(p, row[p]) for p in range(len(row)) if p != true_class]
        return sorted(others, key=lambda pc: -pc[1])

    def worst_confusion(self) -> tuple[int, int]:
        """(true, predicted): the most frequent mistake of the whole matrix."""
        n = len(self.matrix)
        _, t, p = max((self.matrix[t][p], t, p) for t in range(n) for p in range(n) if t != p)
        return t, p


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


ANALYSIS_NAME = "test_analysis.safetensors"  # beside the weights it was computed from
MAX_ANALYSIS_BYTES = 4 * 2**20  # the 10,000 test images' file is ~210 KB


def cached_analysis(weights: Path, data: FashionMNIST) -> Analysis:
    """analyze() of a checkpoint, kept in a file beside it: scoring the 10,000 test images
    takes resnet_fm 34 s on one core here, and the Compare page opens on the best model.

    The file holds the test-set probabilities (float16: 200 KB) and the exact predicted
    classes, with the weights' SHA-256; it is used only while that hash and the test
    set's size still match, and rewritten otherwise (skipped where the folder is read-only)."""
    weights = Path(weights)
    digest = file_sha256(weights)
    cache = weights.with_name(ANALYSIS_NAME)
    labels = data.test_labels.numpy()
    try:
        stored = _read_analysis(cache, digest, len(labels))
        if stored is not None:
            probabilities, predictions = stored
            return Analysis(labels, probabilities, confusion_matrix(labels, predictions), predictions)
    except OSError:
        pass
    analysis = analyze(load_checkpoint(weights).model, data)
    store_analysis(weights, torch.from_numpy(analysis.probabilities))
    return analysis


def store_analysis(weights: Path, probabilities: torch.Tensor) -> None:
    """Keep the test-set probabilities (N, 10) of the checkpoint at `weights` beside it, for
    cached_analysis. A training run calls it at its end with its last saved epoch's scores,
    which it computed anyway, so Compare opens a new run at once (it scored the test set again)."""
    probabilities = probabilities.detach().float().cpu()
    tensors = {"probabilities": probabilities.half(), "predictions": probabilities.argmax(1).to(torch.uint8)}
    try:
        atomic_write_bytes(Path(weights).with_name(ANALYSIS_NAME), save(tensors, metadata={"weights_sha256": file_sha256(weights)}))
    except OSError:
        pass  # a read-only folder: computed again next time


def _read_analysis(path: Path, digest: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities (n, 10) float32, predictions (n,) int64) if `path` is a valid cache for `digest`."""
    try:
        data = read_regular_bytes(path, MAX_ANALYSIS_BYTES)  # never through a FIFO or a link, never unbounded
    except FileProblem:
        return None
    if data is None:
        return None
    try:
        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # safetensors: length, then JSON
    except (SafetensorError, ValueError, UnicodeDecodeError):
        return None
    probabilities, predictions = tensors.get("probabilities"), tensors.get("predictions")
    if (header.get("__metadata__") or {}).get("weights_sha256") != digest or probabilities is None or predictions is None:
        return None
    if tuple(probabilities.shape) != (n, NUM_CLASSES) or tuple(predictions.shape) != (n,) or predictions.dtype != torch.uint8:
        return None
    if int(predictions.max()) >= NUM_CLASSES or not torch.isfinite(probabilities).all():
        return None
    return probabilities.float().numpy(), predictions.long().numpy()


# Where a run starts and what it mixes in: command-line only (not SETTINGS), yet they change what is trained.
SOURCE_LABELS = {"init_from": ("Starts from", "fresh weights"), "photos": ("Photo set", "none")}


def config_differences(configs: dict[str, dict]) -> dict[str, dict[str, object]]:
    """{setting: {run: value}} for every setting that differs in effect: its effective value
    (config.effective_settings: missing ones at their defaults, an empty dropout or width as
    the model's own) is not the same in all the runs that use it. A run that does not use a
    setting (dropout on a model without dropout, momentum with adam: config.unused_settings)
    is left out of it. Not compared: what labels a run or only says where and how fast it ran
    (the settings a sweep cannot vary: name, device, threads)."""
    effective = {run: effective_settings(config) for run, config in configs.items()}
    diffs = {}
    for name, declared in SETTINGS.items():
        values = {run: settings[name] for run, settings in effective.items() if name in settings}
        if declared.sweepable and len({repr(v) for v in values.values()}) > 1:
            diffs[name] = values
    for name in SOURCE_LABELS:
        values = {run: _source(config, name) for run, config in configs.items()}
        if len(set(map(str, values.values()))) > 1:
            diffs[name] = values
    return diffs


def _source(config: dict, name: str) -> str:
    """Where a run started, as a visitor may read it: the checkpoint's run and model and the
    start of its hash (recorded when the run was queued), never the server's path to it."""
    if name != "init_from":
        return config.get(name) or ""
    start = (config.get("extra") or {}).get("fine_tuned_from") or {}
    if start:
        return f"{start.get('run') or 'a checkpoint'} ({start.get('model')}, sha256 {str(start.get('sha256'))[:12]})"
    return Path(config["init_from"]).parent.name if config.get("init_from") else ""


def in_words(name: str, value: object) -> str:
    """A setting's value as a reader says it: on/off, 0.001 rather than 0.0010, patching off."""
    if name in SOURCE_LABELS:
        return str(value) or SOURCE_LABELS[name][1]
    if value is None:
        return "the model's default"
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "patch" and value == 0:
        return "off"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    unit = SETTINGS[name].unit if name in SETTINGS else ""
    return f"{text} {unit}" if unit else text


def setting_name(name: str) -> str:
    """A setting's label inside a sentence: "learning rate", "LR schedule"."""
    label = SOURCE_LABELS[name][0] if name in SOURCE_LABELS else SETTINGS[name].label if name in SETTINGS else name
    return label if label[:2].isupper() else label[0].lower() + label[1:]


def describe_differences(diffs: dict[str, dict[str, object]]) -> str:
    """A sentence: 'only learning rate differs: 0.01 (a) vs 0.1 (b)' (runs with the same value
    named together), or '2 settings differ (a vs b): learning rate: 0.01 vs 0.1; batch size:
    32 images vs 64 images' where every setting has a value per run, in the same runs' order
    (the runs are then named once)."""
    if not diffs:
        return "the configs are the same in effect"
    words = {name: {run: in_words(name, value) for run, value in values.items()} for name, values in diffs.items()}
    runs = list(next(iter(words.values())))
    if len(diffs) > 1 and all(list(said) == runs and len(set(said.values())) == len(runs) for said in words.values()):
        return (f"{len(diffs)} settings differ ({' vs '.join(runs)}): "
                + "; ".join(f"{setting_name(name)}: {' vs '.join(said.values())}" for name, said in words.items()))
    parts = []
    for said in words.values():
        runs_by_value: dict[str, list[str]] = {}
        for run, value in said.items():
            runs_by_value.setdefault(value, []).append(run)
        parts.append(" vs ".join(f"{value} ({', '.join(runs)})" for value, runs in runs_by_value.items()))
    if len(diffs) == 1:
        return f"only {setting_name(next(iter(diffs)))} differs: {parts[0]}"
    return f"{len(diffs)} settings differ: " + "; ".join(f"{setting_name(name)}: {part}" for name, part in zip(diffs, parts))
