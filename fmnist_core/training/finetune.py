"""Fine-tuning: training that starts from a trained model's weights (`train --from`), and
may mix a labelled photo set into every epoch (`--photos`, fmnist_core.training.photo_data).

The model keeps the checkpoint's architecture and constructor arguments; the other
settings are the checkpoint's own training config with FINETUNE_OVERRIDES on top (a short,
gentle continuation), then whatever the user sets. The checkpoint is read only through
checkpoint.py's safe loader (no pickle; arguments, header and values checked).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from fmnist_core.base.files import file_sha256
from fmnist_core.formats.checkpoint import ARG_SETTINGS, CheckpointError, inspect_checkpoint, load_checkpoint, resolve_checkpoint_path
from fmnist_core.formats.run_files import check_config
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, TrainConfig, flag_of
from fmnist_core.training.photo_data import PhotoData, PhotoSetError, load_photo_data

# A few epochs at a tenth of the learning rate the model was trained with, annealed to 0:
# enough to adapt to a new look, too little to forget Fashion-MNIST (README "Fine-tuning").
FINETUNE_EPOCHS = 3
FINETUNE_LR_FACTOR = 0.1
FINETUNE_SCHEDULE = "cosine"
# The settings that decide the model's layers and constructor arguments: a fine-tuning run
# takes them from the checkpoint.
ARCHITECTURE = ("model", *ARG_SETTINGS.values(), "patch")


def base_config(metadata: dict) -> dict:
    """The settings a checkpoint was trained with, with its architecture as the weights say."""
    saved, _ = check_config({**metadata.get("config", {}), "model": metadata["model"], "epochs": 1})
    values = {k: v for k, v in saved.items() if k in SETTINGS}
    args = metadata["model_args"]
    for arg, name in ARG_SETTINGS.items():
        values[name] = args.get(arg, DEFAULTS[name])
    values["patch"] = args["image_size"] if args.get("image_size", 28) != 28 else 0
    return values


def finetune_config(source: str | Path, given: dict) -> TrainConfig:
    """The config of a run that fine-tunes checkpoint `source`: its own settings, the
    fine-tuning defaults, then `given` (the user's flags). CheckpointError when the
    checkpoint cannot be used or `given` asks for another architecture."""
    path = resolve_checkpoint_path(source)
    metadata = inspect_checkpoint(path)
    values = base_config(metadata)
    values.update(epochs=FINETUNE_EPOCHS, lr=values.get("lr", DEFAULTS["lr"]) * FINETUNE_LR_FACTOR,
                  schedule=FINETUNE_SCHEDULE, name="")
    if given.get("photos"):  # the user's own photos replace the synthetic ones the checkpoint was trained with
        values["synthetic_photos"] = 0
    clash = [name for name in ARCHITECTURE if name in given and given[name] != values[name]]
    if clash:
        name = clash[0]
        raise CheckpointError(f"{flag_of(name)} {given[name]}: fine-tuning keeps the checkpoint's architecture "
                              f"({name} {values[name]}); drop {flag_of(name)}")
    return TrainConfig(**{**values, **given, "init_from": str(path.absolute())}).validate()


def check_architecture(config: TrainConfig, metadata: dict, path: Path) -> None:
    """CheckpointError unless `config` builds exactly the checkpoint's model."""
    wanted = (config.model, config.model_kwargs())
    found = (metadata["model"], metadata["model_args"])
    if wanted != found:
        raise CheckpointError(f"{path} holds model '{found[0]}' {found[1]}, but this run builds '{wanted[0]}' {wanted[1]}; "
                              "fine-tuning keeps the checkpoint's architecture")


def load_start_weights(model: nn.Module, config: TrainConfig) -> None:
    """Copy the weights of config.init_from into `model` (built from `config`, on any device)."""
    loaded = load_checkpoint(config.init_from)
    check_architecture(config, loaded.metadata, loaded.path)
    model.load_state_dict(loaded.model.state_dict(), strict=True)


def prepare_sources(config: TrainConfig) -> tuple[TrainConfig, PhotoData | None]:
    """Check a run's starting checkpoint and photo set before anything is written, and record
    what they resolved to in config.extra: {"fine_tuned_from": {path, sha256, model, ...},
    "photos": PhotoData.record()}. Returns (config, the photo data for fit)."""
    extra = dict(config.extra)
    if config.init_from:
        path = resolve_checkpoint_path(config.init_from)
        metadata = inspect_checkpoint(path)
        check_architecture(config, metadata, path)
        extra["fine_tuned_from"] = {
            "path": str(path.absolute()), "sha256": file_sha256(path), "model": metadata["model"],
            "run": path.parent.name, "test_accuracy": metadata["metrics"].get("test_accuracy"),
        }
    photo_data = load_photo_data(config.photos) if config.photos else None
    if photo_data is not None:
        extra["photos"] = photo_data.record()
    return dataclasses.replace(config, extra=extra), photo_data


def photos_for_run(config: TrainConfig) -> PhotoData | None:
    """The photo set of a run being (re)started, checked against the hash the run recorded:
    a resumed run must not continue on other photos than it started with."""
    if not config.photos:
        return None
    photo_data = load_photo_data(config.photos)
    recorded = (config.extra.get("photos") or {}).get("hash")
    if recorded and recorded != photo_data.hash:
        raise PhotoSetError(f"photo set '{config.photos}' has changed since this run started "
                            f"(hash {recorded[:12]} then, {photo_data.hash[:12]} now); start a new run")
    return photo_data
