"""Checkpoints crafted to say whatever an attacker likes, over real or made-up tensors."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from fmnist_core.formats.checkpoint import FORMAT
from fmnist_core.images.data import CLASSES
from fmnist_core.modeling.models import create_model


def craft(path, model: str, model_args: dict | str, tensors: dict) -> Path:
    """A checkpoint whose metadata says what the attacker likes, over whatever tensors."""
    args = model_args if isinstance(model_args, str) else json.dumps(model_args)
    metadata = {"format": FORMAT, "model": model, "model_args": args, "params": "0",
                "classes": json.dumps(list(CLASSES)), "config": "{}", "metrics": "{}"}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def small_state(model="fast_cnn", **args):
    return create_model(model, **args).state_dict()
