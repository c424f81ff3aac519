"""Heatmaps of a checkpoint's mistakes (Compare's grid), kept in a small file beside its weights.

Why a file: the 24 Integrated Gradients maps of one (true class, mistaken for) pair cost
resnet_fm_best ~4 s on one core (24 x 32 forward and backward passes; one batched call saves
only ~10%, and 16 steps instead of 32 moved the maps away from 128 steps' (cosine similarity
down to 0.974, from 0.995), so fewer steps was not taken), and
they depend only on the weights and the method. So each map is computed once per checkpoint
version, whichever session or server asks. A map is used only while the weights' SHA-256, the
method, the explanation code and the torch and captum versions all match; a damaged,
oversized or non-regular file is ignored and rewritten."""

from __future__ import annotations

import functools
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from fmnist_core.base.files import atomic_write_bytes, file_sha256
from fmnist_core.base.hardware import plain_torch_version
from fmnist_core.base.paths import is_shipped
from fmnist_core.formats.run_files import FileProblem, read_regular_bytes
from fmnist_core.images.data import CLASSES, IMAGE_SIZE
from fmnist_core.use import explain

MISTAKE_METHOD = "ig"  # every model has it, and it is sharp at pixel level
MAPS_NAME = "mistake_maps.safetensors"
MAX_MAPS = 2048  # maps kept per checkpoint (~3 MB as float16): ~85 pairs of 24; the oldest go first
MAX_MAPS_BYTES = MAX_MAPS * (IMAGE_SIZE * IMAGE_SIZE * 2 + 8) + 4096  # the maps, their keys, the header


# The maps' algorithm, by number: bump it when explain() or scoring change what a map holds.
# Not a hash of their source: that went stale on every comment, and the shipped files with it.
# tests/core/test_mistake_maps.py recomputes shipped maps and compares, so a change cannot slip by.
MAPS_VERSION = 1


@functools.cache
def _code() -> dict:
    """The algorithm and the versions that make a map: fixed for a process."""
    return {"maps_version": MAPS_VERSION, "torch": plain_torch_version(), "captum": version("captum")}


def _key(weights: Path, method: str, test_images: int) -> dict:
    return {"weights_sha256": file_sha256(weights), "method": method, "test_images": test_images, **_code()}


def mistake_heatmaps(weights: Path, model: nn.Module, test_images: torch.Tensor, indices: list[int], target: int,
                     method: str = MISTAKE_METHOD, rebuild_shipped: bool = False) -> np.ndarray:
    """(N, 28, 28) float32 heatmaps in [-1, 1] of test images `indices` (of `test_images`, uint8
    (10000, 28, 28)) for class `target`, as explain() makes them: from the file beside `weights`
    where it has them, the others computed in one batch and added to it (skipped where the folder
    is read-only, or holds a shipped checkpoint: those files are tracked, and only
    `rebuild_shipped` (fill_mistake_maps) writes them). `model` is the checkpoint's model, used
    only for maps not in the file."""
    weights = Path(weights)
    key = _key(weights, method, len(test_images))
    path = weights.with_name(MAPS_NAME)
    stored = _read(path, key, len(test_images)) or {}
    missing = [i for i in dict.fromkeys(indices) if (i, target) not in stored]
    if missing:
        made = explain.explain_many(model, test_images[missing].numpy(), [target] * len(missing), method)
        # As stored (float16), so a map looks the same when it comes from the file later.
        stored.update({(i, target): result.heatmap.astype(np.float16) for i, result in zip(missing, made)})
    maps = np.stack([np.asarray(stored[(i, target)], np.float32) for i in indices]) if indices else \
        np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)  # taken before the file is trimmed below
    if missing and (rebuild_shipped or not is_shipped(weights)):
        kept = dict(list(stored.items())[-MAX_MAPS:])  # insertion order: the oldest dropped
        try:
            atomic_write_bytes(path, _encode(kept, key))
        except OSError:
            pass  # a read-only folder: computed again next time
    return maps


def _encode(maps: dict[tuple[int, int], np.ndarray], key: dict) -> bytes:
    pairs = list(maps)
    tensors = {
        "indices": torch.tensor([i for i, _ in pairs], dtype=torch.int32),
        "targets": torch.tensor([t for _, t in pairs], dtype=torch.int32),
        "heatmaps": torch.from_numpy(np.stack(list(maps.values()))).half(),
    }
    return save(tensors, metadata={"key": json.dumps(key, sort_keys=True)})


def _read(path: Path, key: dict, test_images: int) -> dict[tuple[int, int], np.ndarray] | None:
    """The maps in `path` if it is a valid file for `key`, in their stored order; else None."""
    try:
        data = read_regular_bytes(path, MAX_MAPS_BYTES)  # never through a FIFO or a link, never unbounded
        if data is None:
            return None
        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])  # safetensors: length, then JSON
        stored_key = json.loads(header.get("__metadata__", {}).get("key", "null"))
    except (FileProblem, OSError, SafetensorError, ValueError, UnicodeDecodeError, AttributeError):
        return None
    if stored_key != key or set(tensors) != {"indices", "targets", "heatmaps"}:
        return None
    indices, targets, heatmaps = tensors["indices"], tensors["targets"], tensors["heatmaps"].float()
    n = len(indices)
    valid = (indices.dtype == targets.dtype == torch.int32 and len(targets) == n
             and heatmaps.shape == (n, IMAGE_SIZE, IMAGE_SIZE) and bool(torch.isfinite(heatmaps).all())
             and bool((heatmaps.abs() <= 1).all()) and bool(((indices >= 0) & (indices < test_images)).all())
             and bool(((targets >= 0) & (targets < len(CLASSES))).all()))
    if not valid:
        return None
    return {(int(i), int(t)): h for i, t, h in zip(indices.tolist(), targets.tolist(), heatmaps.numpy())}


def fill_mistake_maps(weights: Path, model: nn.Module, test_images: torch.Tensor, analysis) -> int:
    """Compute every pair's most confident mistakes' maps into the file beside `weights` (a
    metrics.Analysis of the same weights): how the shipped models' files are made, so Compare
    shows any of their pairs at once. Returns how many maps the file holds for them."""
    pairs = [(t, p) for t in range(len(CLASSES)) for p, count in analysis.confusions(t) if count]
    return sum(len(mistake_heatmaps(weights, model, test_images, analysis.mistakes(t, p), p, rebuild_shipped=True))
               for t, p in pairs)
