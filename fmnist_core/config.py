"""TrainConfig: everything that defines a training run, validated before anything starts."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from .init import INIT_SCHEMES
from .models import list_models, model_info

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PATCH_SIZES = (0, 7, 14)  # 0: whole images; 7 and 14 tile 28x28 exactly
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")  # bf16: autocast for forward and loss; weights stay fp32
MAX_EPOCHS = 200
MAX_BATCH_SIZE = 8192
MAX_THREADS = 64


class ConfigError(ValueError):
    """One invalid field; `field` names it so a form can show the message beside it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class TrainConfig:
    model: str = "cnn_c"
    optimizer: str = "sgd"
    lr: float = 0.01  # peak learning rate
    momentum: float = 0.9  # SGD momentum; RMSprop momentum
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0  # L2 (decoupled for adamw)
    batch_size: int = 32  # images per step (before patching)
    epochs: int = 2
    schedule: str = "constant"  # step: x0.1 at 50% and 75% of the epochs
    label_smoothing: float = 0.0
    dropout: float | None = None  # None: the model's own default
    init: str = "default"
    patch: int = 0  # tile size in pixels; 0 = whole images
    augment: bool = False  # random horizontal flip + up to 2 px shifts
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = auto (leave one core for the app)
    precision: str = "fp32"  # fp32 | bf16 (autocast in training; evaluation is always fp32)
    channels_last: bool = False  # NHWC weights and activations: faster conv kernels on CPU
    softmax_output: bool = False  # cnn_b only: the report's double-softmax quirk
    width: int | None = None  # first conv layer channels (vgg11, fast_cnn, resnet_fm); None = the model's default
    validation: int = 0  # hold out this many training images for validation (never the test set)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    name: str = ""  # free-text label shown in the app
    extra: dict = field(default_factory=dict)  # ignored by training; kept with the run

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first bad field and its allowed values."""
        if self.model not in list_models():
            raise ConfigError("model", f"unknown model '{self.model}'; choose one of: {', '.join(list_models())}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("init", self.init, INIT_SCHEMES)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _number("lr", self.lr, 0.0, 10.0, low_open=True)
        _number("momentum", self.momentum, 0.0, 0.999)
        _number("weight_decay", self.weight_decay, 0.0, 1.0)
        _number("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _number("ema", self.ema, 0.0, 0.99999)
        _integer("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _integer("epochs", self.epochs, 1, MAX_EPOCHS)
        _integer("threads", self.threads, 0, MAX_THREADS)
        _integer("seed", self.seed, 0, 2**31 - 1)
        _integer("validation", self.validation, 0, 30_000)
        if self.patch not in PATCH_SIZES:
            raise ConfigError("patch", f"{self.patch!r} is not a tile size that divides 28; use 0 (off), 7 or 14")
        if self.dropout is not None:
            _number("dropout", self.dropout, 0.0, 0.95)
        if self.width is not None:
            _integer("width", self.width, 4, 256)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov", "Nesterov momentum needs optimizer 'sgd' with momentum > 0")
        if self.softmax_output and self.model != "cnn_b":
            raise ConfigError("softmax_output", "the softmax-output quirk exists only for model 'cnn_b'")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("device", "CUDA is not available on this machine; use 'auto' or 'cpu'")
        return self

    def model_kwargs(self) -> dict:
        """Constructor arguments for create_model, given this config."""
        info = model_info(self.model)
        kwargs: dict = {}
        if self.dropout is not None and info.default_dropout is not None:
            kwargs["dropout"] = self.dropout
        if self.softmax_output:
            kwargs["softmax_output"] = True
        if self.width is not None and info.takes_width:
            kwargs["width"] = self.width
        if self.patch:
            kwargs["image_size"] = self.patch
        return kwargs

    def resolved_threads(self) -> int:
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict (a saved config, a form); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known settings are: {', '.join(sorted(known))}")
        return cls(**values)


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _number(name: str, value, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, f"{value!r} is not a number; use a value in [{low}, {high}]")
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ConfigError(name, f"{value} is out of range; use a value in {bracket}{low}, {high}]")


def _integer(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not a whole number; use {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(name, f"{value} is out of range; use {low} to {high}")
