"""Checkpoints: safetensors weights + JSON metadata, written atomically.

safetensors holds only tensors (no pickle), so loading a file someone else sent cannot
run code. The metadata carries the model name and constructor args, so
`load_checkpoint(path)` rebuilds the model without the training code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .data import CLASSES
from .errors import UserError
from .models import count_parameters, create_model

FORMAT = "fmnist-studio/1"
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, not ours, or does not fit its model."""


@dataclass
class LoadedCheckpoint:
    model: nn.Module  # in eval mode, on the CPU
    metadata: dict  # model, model_args, config, classes, metrics, format
    path: Path

    @property
    def name(self) -> str:
        return self.metadata.get("model", "?")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide runs from other users


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(model: nn.Module, path: Path, config: dict | None = None, metrics: dict | None = None) -> Path:
    """Save weights and metadata to `path` (a .safetensors file) atomically."""
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "model": model.model_name,
        "model_args": json.dumps(model.build_args),
        "params": str(count_parameters(model)),
        "classes": json.dumps(list(CLASSES)),
        "config": json.dumps(config or {}),
        "metrics": json.dumps(metrics or {}),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run folder or the .safetensors file in it: either works."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass a run folder or its {WEIGHTS_NAME} file.")
    return path


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata, JSON fields decoded, without loading the weights."""
    from safetensors import safe_open

    path = resolve_checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated or damaged.") from e
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a Fashion-MNIST Studio checkpoint (no '{FORMAT}' metadata).")
    try:
        return {
            "format": raw["format"],
            "model": raw["model"],
            "model_args": json.loads(raw["model_args"]),
            "params": int(raw.get("params", 0)),
            "classes": json.loads(raw.get("classes", "[]")),
            "config": json.loads(raw.get("config", "{}")),
            "metrics": json.loads(raw.get("metrics", "{}")),
        }
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} has damaged metadata ({e}).") from e


MAX_CHECKPOINT_BYTES = 50 * 1024 * 1024  # our largest model (vgg11) is ~37 MB


def load_checkpoint_bytes(data: bytes, name: str = "upload.safetensors") -> LoadedCheckpoint:
    """Load an uploaded checkpoint. Only safetensors is accepted: nothing is unpickled."""
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{name} is {len(data) / 1e6:.0f} MB; checkpoints up to {MAX_CHECKPOINT_BYTES // 2**20} MB are accepted")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / WEIGHTS_NAME
        path.write_bytes(data)
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(str(path), name)) from e
    loaded.path = Path(name)
    return loaded


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model named in the metadata and load its weights (strictly)."""
    path = resolve_checkpoint_path(path)
    metadata = read_metadata(path)
    try:
        model = create_model(metadata["model"], **metadata["model_args"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path} names a model this version cannot build: {e}") from e
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: the weights do not match model '{metadata['model']}' ({first_line}).") from e
    if any(not torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights; it came from a diverged run.")
    model.eval()
    return LoadedCheckpoint(model=model, metadata=metadata, path=path)
