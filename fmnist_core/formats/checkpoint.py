"""Checkpoints: safetensors weights + JSON metadata, written atomically.

safetensors holds only tensors (no pickle), so loading a file someone else sent cannot
run code. The metadata carries the model name and constructor args, so
`load_checkpoint(path)` rebuilds the model without the training code.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write
from fmnist_core.images.data import CLASSES, IMAGE_SIZE
from fmnist_core.modeling.config import PATCH_SIZES, SETTINGS
from fmnist_core.modeling.models import SCORING_ARGS, count_parameters, create_model, model_info

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


def save_checkpoint(model: nn.Module, path: Path, config: dict | None = None, metrics: dict | None = None) -> Path:
    """Save weights and metadata to `path` (a .safetensors file) atomically."""
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "model": str(model.model_name),
        "model_args": json.dumps(model.build_args),
        "params": str(count_parameters(model)),
        "classes": json.dumps(list(CLASSES)),
        "config": json.dumps(config or {}),
        "metrics": json.dumps(metrics or {}),
    }
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata), epoch=(metrics or {}).get("epoch"))


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A run folder or the .safetensors file in it: either works."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Pass a run folder or its {WEIGHTS_NAME} file.")
    return path


def _decoded(raw: dict, key: str, kind: type, default: str | None = None):
    """One JSON-encoded metadata field, of the type we wrote (a list where we wrote a dict
    is as damaged as bad JSON)."""
    text = raw.get(key, default)
    if text is None:
        raise ValueError(f"no '{key}'")
    value = json.loads(text)
    if not isinstance(value, kind):
        raise ValueError(f"'{key}' is {type(value).__name__}, not {kind.__name__}")
    return value


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata, JSON fields decoded and type-checked, without loading the weights."""
    path = resolve_checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated or damaged.") from e
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a Fashion-MNIST Studio checkpoint (no '{FORMAT}' metadata).")
    try:
        metadata = {
            "format": raw["format"],
            "model": raw["model"],
            "model_args": _decoded(raw, "model_args", dict),
            "params": int(raw.get("params", 0)),
            "classes": _decoded(raw, "classes", list, "[]"),
            "config": _decoded(raw, "config", dict, "{}"),
            "metrics": _decoded(raw, "metrics", dict, "{}"),
        }
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} has damaged metadata ({e}).") from e
    if metadata["classes"] and metadata["classes"] != list(CLASSES):
        raise CheckpointError(f"{path} was trained on other classes ({metadata['classes'][:3]}...), not Fashion-MNIST's.")
    return metadata


# Which TrainConfig setting bounds each constructor argument a checkpoint may name: a
# checkpoint can ask for no model that the Train form could not have trained.
ARG_SETTINGS = {"dropout": "dropout", "width": "width", "softmax_output": "softmax_output", "tta": "tta"}
IMAGE_SIZES = (IMAGE_SIZE, *(p for p in PATCH_SIZES if p))  # whole images, or a patch size


def check_model_args(model: str, args: dict) -> None:
    """Raise CheckpointError unless `model` is registered and `args` are arguments its builder
    takes, each within the bounds TrainConfig.validate() applies."""
    try:
        builder = model_info(model).builder
    except UserError as e:
        raise CheckpointError(f"names a model this version cannot build: {e}") from e
    takes = set(inspect.signature(builder).parameters) | set(SCORING_ARGS)
    for name, value in args.items():
        if name not in takes:
            raise CheckpointError(f"model '{model}' takes no argument '{name}' (it takes: {', '.join(sorted(takes)) or 'none'})")
        if name == "image_size":
            if isinstance(value, bool) or value not in IMAGE_SIZES:
                raise CheckpointError(f"image_size {value!r} is not one this app trains on ({', '.join(map(str, IMAGE_SIZES))})")
            continue
        setting = SETTINGS[ARG_SETTINGS[name]]
        if value is None:
            raise CheckpointError(f"argument '{name}' is empty")
        try:
            setting.check(name, value)
        except UserError as e:
            raise CheckpointError(f"model argument {e}") from e


def _header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{tensor name: (shape, dtype name)} from the safetensors header; no tensor is read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype()) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); it may be truncated or damaged.") from e


def _header_dtype(dtype: torch.dtype) -> str:
    """torch.float32 -> 'F32', as safetensors names it in the header."""
    names = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    return names.get(dtype, str(dtype))


def check_header(path: Path, model: nn.Module) -> None:
    """Compare the file's tensor names, shapes and dtypes with `model`'s state (a meta
    model: shapes only, no memory) before a byte of weights is allocated."""
    found = _header(path)
    expected = {name: (tuple(t.shape), _header_dtype(t.dtype)) for name, t in model.state_dict().items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    problem = None
    if missing:
        problem = f"{len(missing)} tensor(s) missing, first {missing[0]}"
    elif extra:
        problem = f"{len(extra)} tensor(s) the model does not have, first {extra[0]}"
    else:
        for name, (shape, dtype) in expected.items():
            if found[name][1] != dtype:
                problem = f"{name} is {found[name][1]} where the model needs {dtype}"
            elif found[name][0] != shape:
                problem = f"{name} has shape {list(found[name][0])} where the model needs {list(shape)}"
            if problem:
                break
    if problem:
        raise CheckpointError(f"{path}: the weights do not match model '{model.model_name}' ({problem}).")


def inspect_checkpoint(path: str | Path) -> dict:
    """Everything about a checkpoint that can be checked without allocating its model:
    metadata, constructor arguments against the config's bounds, and the header against
    the model built on the meta device. Returns the metadata; raises CheckpointError."""
    path = resolve_checkpoint_path(path)
    metadata = read_metadata(path)
    try:
        check_model_args(metadata["model"], metadata["model_args"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e
    try:
        with torch.device("meta"):  # parameters get shapes and dtypes but no storage
            skeleton = create_model(metadata["model"], **metadata["model_args"])
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path} names a model this version cannot build: {e}") from e
    check_header(path, skeleton)
    return metadata


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
    """Check the checkpoint (inspect_checkpoint), then build the model and load its weights."""
    path = resolve_checkpoint_path(path)
    metadata = inspect_checkpoint(path)
    model = create_model(metadata["model"], **metadata["model_args"])
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
