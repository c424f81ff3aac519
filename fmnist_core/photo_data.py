"""A labelled photo set as training needs it: preprocessed 28x28 inputs, split into a
training part and a held-out part, with a content hash to record with the run.

`PhotoData` is the one interface between photo sets and training (engine.fit, `train
--photos`). `load_photo_data(ref)` makes one from a folder laid out as torchvision's
ImageFolder (one subfolder per class: the class's name, e.g. `Ankle boot` or `T-shirt_top`,
or its index 0-9). A stored photo set (`<runs>/.photosets/<name>/`) plugs in at the one
marked place below.

The split is fixed by content: a photo is held out when the SHA-256 of its file's bytes,
read as a number, is 0, 1 or 2 modulo 10 (about 30%). So a photo stays in its part when the
set grows or is renamed, and two copies of one photo are never on both sides.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import CLASSES, IMAGE_SIZE
from .errors import UserError
from .inference import ImageError, open_image, read_image_file, to_model_input

HELD_OUT_TENTHS = 3  # of every 10 photos (by content hash), 3 are held out
SPLIT = f"sha256(file) mod 10 < {HELD_OUT_TENTHS}: held out (~{HELD_OUT_TENTHS * 10}%)"
MAX_PHOTOS = 5000  # files in one folder set; preprocessing is ~10 ms each
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class PhotoSetError(UserError):
    """A photo set cannot be used; the message names the file or folder and the fix."""


@dataclass(frozen=True)
class PhotoData:
    """A photo set's two parts as model inputs: images uint8 (N, 28, 28), labels int64 (N,)."""

    name: str
    hash: str  # SHA-256 over every (class, file hash), sorted: the set's content, not its file names
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
    """The photo set `ref`: a folder of class subfolders. PhotoSetError when it cannot be used."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return from_image_folder(path)
    # A stored photo set's name (fmnist_core.photosets) is resolved here once that store exists.
    raise PhotoSetError(f"photo set '{ref}' not found: pass a folder with one subfolder per class "
                        f"({', '.join(CLASSES)}, or 0-9)")


def _folder_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


CLASS_OF_FOLDER = {**{_folder_key(c): i for i, c in enumerate(CLASSES)}, **{str(i): i for i in range(len(CLASSES))},
                   "tshirt": 0, "top": 0, "boot": 9}


def class_of_folder(name: str) -> int | None:
    """A class subfolder's class index: 'Ankle boot', 'ankle_boot', 'T-shirt_top', 'tshirt' or '9'."""
    return CLASS_OF_FOLDER.get(_folder_key(name))


def held_out(file_hash: str) -> bool:
    return int(file_hash, 16) % 10 < HELD_OUT_TENTHS


def from_image_folder(folder: Path) -> PhotoData:
    """Read, check and preprocess every photo; nothing is half-read: any bad file is one PhotoSetError."""
    files: list[tuple[int, Path]] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir(follow_symlinks=False):
            raise PhotoSetError(f"{folder}: '{entry.name}' is not a class folder; put photos in one subfolder per class")
        label = class_of_folder(entry.name)
        if label is None:
            raise PhotoSetError(f"{folder}: unknown class folder '{entry.name}'; name it after a class "
                                f"({', '.join(CLASSES)}) or its index 0-9")
        for photo in sorted(Path(entry.path).iterdir()):
            if photo.name.startswith("."):
                continue
            if photo.suffix.lower() not in IMAGE_SUFFIXES or not photo.is_file():
                raise PhotoSetError(f"{photo}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            files.append((label, photo))
            if len(files) > MAX_PHOTOS:
                raise PhotoSetError(f"{folder} holds more than {MAX_PHOTOS:,} photos; use a smaller set")
    if not files:
        raise PhotoSetError(f"{folder} holds no photos; put them in one subfolder per class")
    inputs, labels, hashes = [], [], []
    for label, photo in files:
        try:
            data = read_image_file(photo)
            inputs.append(to_model_input(open_image(data)))
        except ImageError as e:
            raise PhotoSetError(f"{photo}: {e}") from e
        labels.append(label)
        hashes.append(hashlib.sha256(data).hexdigest())
    keys = sorted(f"{label}:{h}" for label, h in zip(labels, hashes))
    set_hash = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    images = torch.from_numpy(np.stack(inputs)).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    heldout = torch.tensor([held_out(h) for h in hashes])
    if heldout.all() or not heldout.any():
        raise PhotoSetError(f"{folder}: its {len(files)} photo(s) all fall in one part of the split ({SPLIT}); "
                            "add more photos (10 or more)")
    return PhotoData(name=str(folder), hash=set_hash, train_images=images[~heldout], train_labels=label_tensor[~heldout],
                     heldout_images=images[heldout], heldout_labels=label_tensor[heldout])
