"""A labelled photo set as training needs it: preprocessed 28x28 inputs, split into a
training part and a held-out part, with a content hash to record with the run.

`PhotoData` is the one interface between photo sets and training (engine.fit, `train
--photos`). `load_photo_data(ref)` makes one from a stored photo set's name
(`<runs>/.photosets/<name>/`, see fmnist_core.store.photosets) or from a folder laid out as
torchvision's ImageFolder. Both go through photosets' checks and its one split rule, so a
folder trains exactly as the same photos would once added as a set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
