"""How well photos work: a model's accuracy on synthetic photos of items beside its accuracy
on the same items as 28x28 images, per class and per background family, and how well the
preprocessing's mask covers the true item (IoU)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fmnist_core.images.data import CLASSES
from fmnist_core.images.photo import find_item
from fmnist_core.images.photo_synth import synth_photos
from fmnist_core.use.inference import predict_images


@dataclass
class PhotoMeasure:
    count: int
    photo_accuracy: float  # on the photos, after find_item
    image_accuracy: float  # on the same items as 28x28 images
    mean_iou: float  # find_item's mask against the true mask
    no_item: int  # photos where no item was found (counted wrong)
    milliseconds_p50: float  # find_item per photo (the photos are 480-900 px: below open_image's working size)
    per_class: dict[str, tuple[float, float]] = field(default_factory=dict)  # class -> (photo, image) accuracy
    per_family: dict[str, tuple[float, float]] = field(default_factory=dict)  # surface -> (photo accuracy, IoU)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def measure_photos(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, seed: int = 0,
                   look: str = "default") -> PhotoMeasure:
    """images: uint8 (N, 28, 28), labels (N,). The photos are made with synth_photos(seed, look)."""
    labels = np.asarray(labels)
    photos = synth_photos(images, labels, seed=seed, look=look)
    inputs, ious, times, found = [], [], [], []
    for photo in photos:
        start = time.perf_counter()
        cut = find_item(photo.image)
        times.append((time.perf_counter() - start) * 1000)
        ious.append(iou(cut.mask, photo.mask))
        found.append(cut.model_input is not None)
        inputs.append(cut.model_input if cut.model_input is not None else np.zeros((28, 28), np.uint8))
    on_photos = np.array([CLASSES.index(p.label) for p in predict_images(model, inputs)]) == labels
    on_photos &= np.array(found)
    on_images = np.array([CLASSES.index(p.label) for p in predict_images(model, list(np.asarray(images)))]) == labels
    families = np.array([p.look for p in photos])
    iou_by_photo = np.array(ious)
    return PhotoMeasure(
        count=len(photos), photo_accuracy=float(on_photos.mean()), image_accuracy=float(on_images.mean()),
        mean_iou=float(iou_by_photo.mean()), no_item=int(len(found) - sum(found)), milliseconds_p50=float(np.median(times)),
        per_class={name: (float(on_photos[labels == i].mean()), float(on_images[labels == i].mean()))
                   for i, name in enumerate(CLASSES) if (labels == i).any()},
        per_family={str(f): (float(on_photos[families == f].mean()), float(iou_by_photo[families == f].mean())) for f in sorted(set(families))},
    )
