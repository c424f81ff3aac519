"""A labelled photo set as training needs it: preprocessed 28x28 inputs, split into a
training part and a held-out part, with a content hash to record with the run.

`PhotoData` is the one interface between photo sets and training (engine.fit, `train
--photos`). `load_photo_data(ref)` makes one from a stored photo set's name
(`<runs>/.photosets/<name>/`, see fmnist_core.store.photosets) or from a folder laid out as
torchvision's ImageFolder. Both go through photosets' checks and its one split rule, so a
folder trains exactly as the same photos would once added as a set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write_bytes
from fmnist_core.base.paths import runs_dir
from fmnist_core.formats.run_files import FileProblem, read_regular_bytes
from fmnist_core.images.data import CLASSES, IMAGE_SIZE
from fmnist_core.images.photo_synth import synth_photos
from fmnist_core.store.photosets import (
    HELDOUT_FRACTION,
    PhotoLimits,
    PhotoSetError,
    PhotoSetStore,
    content_hash,
    fixed_split,
    folder_candidates,
    model_inputs,
    validated_photos,
)
from fmnist_core.use.inference import open_image, to_model_input

SPLIT = f"{HELDOUT_FRACTION:.0%} of each class held out, in an order drawn from the set's content hash"

__all__ = ["SPLIT", "PhotoData", "PhotoSetError", "load_photo_data"]


@dataclass(frozen=True)
class PhotoData:
    """A photo set's two parts as model inputs: images uint8 (N, 28, 28), labels int64 (N,)."""

    name: str
    hash: str  # photosets.content_hash: the photos' bytes and labels, not their file names
    train_images: torch.Tensor
    train_labels: torch.Tensor
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    split: str = SPLIT

    def record(self) -> dict:
        """What a run keeps about the set it used (config.extra["photos"])."""
        return {"name": self.name, "hash": self.hash, "split": self.split,
                "train": len(self.train_labels), "heldout": len(self.heldout_labels)}


def load_photo_data(ref: str) -> PhotoData:
    """The photo set `ref`: a stored set's name, else a folder of class subfolders.
    PhotoSetError (one line) when it cannot be used."""
    store = PhotoSetStore()
    path = Path(ref).expanduser()
    # A stored set's name wins over a folder of that name: the app passes the names of a
    # visitor's sets, and one called "docs" must not train on the server's ./docs.
    if ref in store.names() or not path.is_dir():
        photoset = store.get(ref)
        inputs = model_inputs(photoset)
        images, labels, heldout, set_hash = inputs.images, inputs.labels, inputs.heldout, photoset.sha256
    else:
        images, labels, heldout, set_hash = _from_folder(path)
    if heldout.all() or not heldout.any():
        raise PhotoSetError(f"photo set '{ref}': its {len(labels)} photo(s) all fall in one part of the split ({SPLIT}); "
                            "add more photos (4 or more of a class)")
    image_tensor, label_tensor, held = torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(heldout)
    return PhotoData(name=str(ref), hash=set_hash, train_images=image_tensor[~held], train_labels=label_tensor[~held],
                     heldout_images=image_tensor[held], heldout_labels=label_tensor[held])


def _from_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A folder read and checked as `photos add` would, without keeping it."""
    photos = list(validated_photos(folder_candidates(folder, PhotoLimits())))
    if not photos:
        raise PhotoSetError(f"{folder} holds no photos; put them in one subfolder per class")
    entries = [(candidate.label, digest) for candidate, _, _, digest in photos]
    set_hash = content_hash(entries)
    images = np.stack([to_model_input(open_image(data)) for _, data, _, _ in photos])
    labels = np.array([label for label, _ in entries], dtype=np.int64)
    heldout = np.array([split == "heldout" for split in fixed_split(entries, set_hash)], dtype=bool)
    return images, labels, heldout, set_hash


# ---- synthetic photos of training images (TrainConfig.synthetic_photos) -------------------------
# Phone-like photos of the run's own training images (fmnist_core.images.photo_synth, its default
# look), each through Predict's preprocessing, mixed into training like a user's photo set. The
# photos' seed is fixed: the run's seed orders batches, it does not change which photos exist, so
# every run with the same count shares one cached set. Made once (~0.1 s a photo on one core)
# and kept under <runs>/.cache; bump SYNTHETIC_VERSION when the generator or the preprocessing
# changes what a photo turns into.
SYNTHETIC_SEED = 11
SYNTHETIC_VERSION = 1
_SYNTHETIC_CHUNK = 100  # photos made at a time: a photo is ~2 MB before it is cut to 28x28


def synthetic_photo_data(images: torch.Tensor, labels: torch.Tensor, count: int) -> PhotoData:
    """Photos of the first `count` of these (training) images, uint8 (N, 28, 28), as PhotoData:
    split by the rule a user's set is split by; a photo whose item is not found is left out."""
    images, labels = images[:count].contiguous(), labels[:count].contiguous()
    key = hashlib.sha256(b"%d:%d:" % (SYNTHETIC_VERSION, SYNTHETIC_SEED) + images.numpy().tobytes()
                         + labels.numpy().astype(np.int64).tobytes()).hexdigest()[:16]
    path = runs_dir() / ".cache" / f"synthetic-photos-{key}.safetensors"
    made = _read_synthetic(path, count)
    if made is None:
        made = _make_synthetic(images.numpy(), labels.numpy())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save({"inputs": made[0], "labels": made[1], "digests": made[2]}))
        except OSError:
            pass  # a read-only or full store: the photos are made again next time
    inputs, kept_labels, digests = made
    entries = [(int(label), bytes(digest).hex()) for label, digest in zip(kept_labels.tolist(), digests.numpy())]
    set_hash = content_hash(entries)
    held = torch.tensor([split == "heldout" for split in fixed_split(entries, set_hash)])
    return PhotoData(name=f"synthetic photos of {count} training images", hash=set_hash,
                     train_images=inputs[~held], train_labels=kept_labels[~held],
                     heldout_images=inputs[held], heldout_labels=kept_labels[held])


def _make_synthetic(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng_seeds = np.random.SeedSequence(SYNTHETIC_SEED).spawn(math.ceil(len(images) / _SYNTHETIC_CHUNK))
    inputs, kept, digests = [], [], []
    for chunk, seed in enumerate(rng_seeds):
        part = slice(chunk * _SYNTHETIC_CHUNK, (chunk + 1) * _SYNTHETIC_CHUNK)
        for photo in synth_photos(images[part], labels[part], seed=int(seed.generate_state(1)[0])):
            try:  # exactly what Predict does with the same JPEG: decode, then find the item
                inputs.append(to_model_input(open_image(photo.jpeg)))
            except UserError:  # no item found: a user's set refuses such a photo too
                continue
            kept.append(photo.label)
            digests.append(np.frombuffer(hashlib.sha256(photo.jpeg).digest(), np.uint8))
    if not inputs:
        raise PhotoSetError("no synthetic photo had an item to find")
    return (torch.from_numpy(np.stack(inputs)), torch.tensor(kept, dtype=torch.int64),
            torch.from_numpy(np.stack(digests)))


def _read_synthetic(path: Path, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The cached photos if `path` holds a valid set of at most `count`; else None (made again)."""
    limit = count * (IMAGE_SIZE * IMAGE_SIZE + 8 + 32) + 4096  # inputs, labels, digests, the header
    try:
        data = read_regular_bytes(path, limit)  # never through a FIFO or a link, never unbounded
        tensors = load(data) if data is not None else None
    except (FileProblem, OSError, SafetensorError, ValueError):
        return None
    if tensors is None or set(tensors) != {"inputs", "labels", "digests"}:
        return None
    inputs, labels, digests = tensors["inputs"], tensors["labels"], tensors["digests"]
    n = len(labels)
    valid = (0 < n <= count and inputs.dtype == digests.dtype == torch.uint8 and labels.dtype == torch.int64
             and inputs.shape == (n, IMAGE_SIZE, IMAGE_SIZE) and digests.shape == (n, 32)
             and bool(((labels >= 0) & (labels < len(CLASSES))).all()))
    return (inputs, labels, digests) if valid else None
