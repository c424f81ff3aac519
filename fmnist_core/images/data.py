"""Fashion-MNIST: find the official IDX files, read them once, serve batches by index.

The whole data set is 70,000 28x28 uint8 images (~55 MB), so it lives in memory as
tensors. Batches are index slices of a per-epoch permutation: no per-sample Dataset or
DataLoader in the hot path, which is what makes small models fast on a 2-core CPU.
"""

from __future__ import annotations

import functools
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fmnist_core.base import paths
from fmnist_core.base.errors import UserError

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MEAN, STD = 0.2860, 0.3530  # of the training images, in [0, 1]
IMAGE_SIZE = 28
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MISSING_HELP = (
    "Fashion-MNIST files not found. Install them with "
    "'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four "
    "*-idx?-ubyte(.gz) files in ./data/ or in the folder named by $FMNIST_DATA_DIR, "
    "or run 'make data' to download them."
)


class DataError(UserError):
    """The data files are missing or unreadable; the message says how to fix it."""


@dataclass(frozen=True)
class FashionMNIST:
    """Both splits as uint8 tensors: images (N, 28, 28), labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str

    def test_item(self, index: int) -> tuple[np.ndarray, int]:
        """Test image `index` as uint8 (28, 28) and its label."""
        return self.test_images[index].numpy(), int(self.test_labels[index])

    def random_test_index(self, label: int, rng: np.random.Generator | None = None) -> int:
        """The index of a random test image of class `label` (Predict's "Random test image")."""
        candidates = np.flatnonzero(self.test_labels.numpy() == label)
        return int((rng or np.random.default_rng()).choice(candidates))


def candidate_dirs() -> list[Path]:
        return paths.data_dirs()


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_data_dir() -> Path:
    """The first candidate folder that holds all four files; DataError otherwise."""
    for directory in candidate_dirs():
        if all(_find_file(directory, stem) for stem in FILES.values()):
            return directory
    raise DataError(MISSING_HELP)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array, checking its header.

    IDX header: two zero bytes, a type code (0x08 = uint8), the number of dimensions,
    then one big-endian uint32 per dimension.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}. Delete it and install the data again.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file (bad header). Delete it and install the data again.")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated: header says {shape}, body has {len(body)} bytes. "
            "Delete it and install the data again."
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _data_file(directory: Path, stem: str) -> Path:
    """One of the four files in a folder given to load_fashion_mnist (not checked by find_data_dir)."""
    path = _find_file(directory, stem)
    if path is None:
        raise DataError(f"{directory} has no {stem}(.gz). {MISSING_HELP}")
    return path


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> FashionMNIST:
    arrays = {key: read_idx(_data_file(Path(directory), stem)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
            raise DataError(f"{split} files in {directory} do not match: images {images.shape}, labels {labels.shape}")
        if labels.max(initial=0) >= len(CLASSES):
            raise DataError(f"{split} labels in {directory} are out of range 0-9")
    return FashionMNIST(
        train_images=torch.from_numpy(arrays["train_images"].copy()),
        train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test_images"].copy()),
        test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        source=directory,
    )


def load_fashion_mnist(directory: str | Path | None = None) -> FashionMNIST:
    """The data set, read once per process and folder (later calls are free)."""
    directory = Path(directory) if directory is not None else find_data_dir()
    return _load(str(directory.resolve()))


def ensure_data() -> Path:
    """Find the data, or download it with torchvision into ./data/ as a last resort."""
    try:
        return find_data_dir()
    except DataError:
        pass
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(str(paths.local_data_dir()), train=True, download=True)
        TorchvisionFashionMNIST(str(paths.local_data_dir()), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - any download failure gets the same advice
        raise DataError(f"{MISSING_HELP} (download failed: {e})") from e
    return find_data_dir()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28), standardised."""
    x = images.to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)
    return x if x.dim() == 4 else x.unsqueeze(1)


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Label-preserving augmentation for a whole batch at once: random horizontal flip
    and a random shift of up to +-max_shift pixels (zero padded, in normalised units of
    the black background). Vertical flips are left out: an upside-down shoe is not a shoe.
    """
    # The random draws come from the CPU generator (the same numbers on any device, and
    # resumable), then move to the images' device.
    n, device = x.shape[0], x.device  # x: (B, 1, 28, 28)
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    if max_shift <= 0:
        return x
    background = -MEAN / STD
    pad = max_shift
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), value=background)  # (B, 1, 32, 32)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
    # Gather each image's shifted window with one advanced-indexing op.
    offsets = torch.arange(IMAGE_SIZE, device=device)
    rows = (dy.view(n, 1) + offsets).view(n, 1, IMAGE_SIZE, 1)
    cols = (dx.view(n, 1) + offsets).view(n, 1, 1, IMAGE_SIZE)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    return padded[batch, 0:1, rows, cols].view(n, 1, IMAGE_SIZE, IMAGE_SIZE)


def to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Tile each image into non-overlapping patch x patch pieces.

    (B, 1, 28, 28) -> (B * k, 1, patch, patch) with k = (28 / patch)^2; tiles of one
    image are consecutive, so labels repeat with repeat_interleave(k).
    """
    tiles = x.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, 1, n, n, P, P)
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, 1, patch, patch)


def tiles_per_image(patch: int) -> int:
    return (IMAGE_SIZE // patch) ** 2 if patch else 1


def split_train_validation(n: int, validation: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random split of training indices, so tuning never touches the test set."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[validation:], perm[:validation]


def class_counts(labels: torch.Tensor) -> list[int]:
    return torch.bincount(labels, minlength=len(CLASSES)).tolist()


def example_grid(images: torch.Tensor, labels: torch.Tensor, per_class: int = 10, seed: int = 0) -> np.ndarray:
    """A uint8 mosaic (10*28, per_class*28): one row of random examples per class."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for c in range(len(CLASSES)):
        idx = torch.nonzero(labels == c).flatten()
        pick = idx[torch.randperm(len(idx), generator=generator)[:per_class]]
        row = images[pick]  # (k, 28, 28)
        if len(row) < per_class:
            row = torch.cat([row, torch.zeros(per_class - len(row), IMAGE_SIZE, IMAGE_SIZE, dtype=row.dtype)])
        rows.append(torch.cat(list(row), dim=1))  # (28, k*28)
    return torch.cat(rows, dim=0).numpy()
