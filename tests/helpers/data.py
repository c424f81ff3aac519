"""A tiny Fashion-MNIST of our own: IDX files laid out as the official ones, learnable in seconds."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from fmnist_core.images.data import FILES


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write a uint8 IDX file exactly as the official ones are laid out."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def synthetic_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Learnable 28x28 images: class c is a bright 8x8 block at a class-specific place."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        images[i, r : r + 8, col : col + 6] = 220
    return images


def make_idx_dir(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_labels = rng.integers(0, 10, n_train).astype(np.uint8)
    test_labels = rng.integers(0, 10, n_test).astype(np.uint8)
    write_idx(folder / FILES["train_images"], synthetic_images(train_labels, 1))
    write_idx(folder / FILES["train_labels"], train_labels)
    write_idx(folder / FILES["test_images"], synthetic_images(test_labels, 2))
    write_idx(folder / FILES["test_labels"], test_labels)
    return folder
