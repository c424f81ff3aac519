"""TrainConfig: everything that defines a training run, validated before anything starts.

Each setting is declared once, on its field: type, range or choices, default, unit and
help (`Setting`). `TrainConfig.validate()`, the CLI's flags (cli.py), the Train page's
widgets (ui/form.py) and a sweep's search space are all made from that declaration, so
they cannot disagree about what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmnist_core.base.errors import UserError
from fmnist_core.base.hardware import native_bf16
from fmnist_core.base.threads import auto_threads
from fmnist_core.modeling.models import list_models, model_info
from fmnist_core.modeling.weight_init import INIT_SCHEMES

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
PATCH_SIZES = (0, 7, 14)  # 0: whole images; 7 and 14 tile 28x28 exactly
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")  # bf16: autocast for forward and loss; weights stay fp32. auto: bf16 where native
RESOLVED_PRECISIONS = PRECISIONS[1:]  # what `auto` becomes on a given device (TrainConfig.resolved_precision)
MAX_EPOCHS = 200
MAX_BATCH_SIZE = 8192
MAX_THREADS = 64
MAX_WIDTH = 256
MAX_NAME_LENGTH = 100  # characters of a run's display name
MAX_SYNTHETIC_PHOTOS = 20_000  # of the 60,000 training images (30,000 at most go to validation)
# TrainConfig's inputs that are not settings (see the fields), with their command-line flags.
SOURCE_FIELDS = {"init_from": "--from", "photos": "--photos"}
MAX_SOURCE_LENGTH = 4096  # characters of a path (PATH_MAX)


class ConfigError(UserError):
    """One invalid field; `field` names it so a form can show the message beside it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Setting:
    """How one TrainConfig field may be set: the single source for validation, CLI and form.

    kind: "choice" (one of `choices`), "int" or "float" (in [low, high], `low_open` makes
    the low end exclusive), "bool", or "text" (at most `high` characters). `optional`
    allows None, meaning "the model's own default"."""

    label: str
    help: str
    kind: str
    choices: tuple | Callable[[], tuple] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    optional: bool = False
    unit: str = ""
    step: float | None = None  # the form's +/- step
    advanced: bool = False  # the form shows it under "Advanced"
    sweepable: bool = True  # a sweep may vary it

    def allowed(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())

    def describe_range(self) -> str:
        """'0 to 200', '(0.0, 10.0]', 'sgd, adam or rmsprop', for messages and help."""
        if self.kind == "choice":
            names = [str(c) for c in self.allowed()]
            return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        if self.kind == "int":
            return f"{self.low} to {self.high}"
        if self.kind == "float":
            return f"{'(' if self.low_open else '['}{self.low}, {self.high}]"
        if self.kind == "text":
            return f"at most {self.high} characters"
        return "on or off"

    def check(self, name: str, value: Any) -> None:
        """Raise ConfigError unless `value` is allowed."""
        if value is None and self.optional:
            return
        if self.kind == "choice":
            if value not in self.allowed():
                raise ConfigError(name, f"unknown {name.replace('_', ' ')} {value!r}; choose one of: {self.describe_range()}")
        elif self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, f"{value!r} is not a whole number; use {self.describe_range()}")
            assert self.low is not None and self.high is not None  # a number setting always declares its range
            if not self.low <= value <= self.high:
                raise ConfigError(name, f"{value} is out of range; use {self.describe_range()}")
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(name, f"{value!r} is not a number; use a value in {self.describe_range()}")
            assert self.low is not None and self.high is not None  # a number setting always declares its range
            if value > self.high or value < self.low or (self.low_open and value == self.low):
                raise ConfigError(name, f"{value:g} is out of range; use a value in {self.describe_range()}")
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(name, f"{value!r} is not on or off (true/false)")
        elif self.kind == "text":
            if not isinstance(value, str):
                raise ConfigError(name, f"{value!r} is not text")
            assert self.high is not None  # a text setting always declares its length
            if len(value) > self.high:
                raise ConfigError(name, f"is {len(value)} characters long; use {self.describe_range()}")

    def parse(self, text: str) -> Any:
        """A value typed as text (a CLI flag, a sweep's grid or a URL), in this setting's type."""
        text = text.strip()
        if self.kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise UserError(f"'{text}' is not on or off; use true or false")
        if self.optional and text.lower() in ("", "none", "default"):
            return None
        if self.kind == "int" or (self.kind == "choice" and all(isinstance(c, int) for c in self.allowed())):
            try:
                return int(text)
            except ValueError:
                raise UserError(f"'{text}' is not a whole number") from None
        if self.kind == "float":
            try:
                return float(text)
            except ValueError:
                raise UserError(f"'{text}' is not a number") from None
        return text


def flag_of(name: str) -> str:
    """The CLI flag of a setting: batch_size -> --batch-size (cli.py makes the flags; a
    model card's rebuild command and error messages name them)."""
    return "--" + name.replace("_", "-")


def setting(default, **declaration) -> Any:
    """A dataclass field carrying its Setting (see the class above)."""
    return field(default=default, metadata={"setting": Setting(**declaration)})


@dataclass
class TrainConfig:
    model: str = setting("cnn_c", label="Model", kind="choice", choices=lambda: tuple(list_models()),
                         help="Architecture: the report's five, VGG11, and ours.")
    optimizer: str = setting("sgd", label="Optimizer", kind="choice", choices=OPTIMIZERS,
                             help="sgd (with momentum/Nesterov), adam, adamw (decoupled weight decay) or rmsprop.")
    lr: float = setting(0.01, label="Learning rate", kind="float", low=0.0, high=10.0, low_open=True, step=0.001,
                        help="Peak learning rate. The report used 0.1 for MLP4 and 0.01-0.17 for the others.")
    momentum: float = setting(0.9, label="Momentum", kind="float", low=0.0, high=0.999, step=0.05,
                              help="SGD and RMSprop momentum.")
    nesterov: bool = setting(False, label="Nesterov", kind="bool", help="Nesterov momentum (SGD with momentum > 0 only).")
    weight_decay: float = setting(0.0, label="Weight decay", kind="float", low=0.0, high=1.0, step=1e-4,
                                  help="L2 penalty (decoupled for adamw).")
    batch_size: int = setting(32, label="Batch size", kind="int", low=1, high=MAX_BATCH_SIZE, step=32, unit="images",
                              help="Images per optimizer step (before patching).")
    epochs: int = setting(2, label="Epochs", kind="int", low=1, high=MAX_EPOCHS, step=1,
                          help="Passes over the training set.")
    schedule: str = setting("constant", label="LR schedule", kind="choice", choices=SCHEDULES,
                            help="constant; step: x0.1 at 50% and 75% of the run; cosine; onecycle: warm-up then anneal.")
    label_smoothing: float = setting(0.0, label="Label smoothing", kind="float", low=0.0, high=0.5, step=0.05,
                                     help="Share of the target spread over the other classes.")
    dropout: float | None = setting(None, label="Dropout", kind="float", low=0.0, high=0.95, optional=True, step=0.05,
                                    help="Dropout probability; empty = the model's own default (models without dropout ignore it).")
    init: str = setting("default", label="Weight init", kind="choice", choices=INIT_SCHEMES,
                        help="default = PyTorch's; custom = the report's (Normal for Linear, He for conv).")
    patch: int = setting(0, label="Patching", kind="choice", choices=PATCH_SIZES, unit="px",
                         help="Tile size: train on PxP tiles, predict with the mean of the tiles' probabilities; 0 = whole images.")
    augment: bool = setting(False, label="Augmentation", kind="bool", help="Random horizontal flips and shifts of up to 2 px.")
    photo_augment: float = setting(0.0, label="Photo augmentation", kind="float", low=0.0, high=1.0, step=0.25,
                                   help="Strength of photo-like changes to every training image (contrast, tone curve, light "
                                        "gradient, blur, noise, small rotation and zoom, an erased patch), so the model copes "
                                        "with preprocessed photos; 0 = off.")
    synthetic_photos: int = setting(0, label="Synthetic photos", kind="int", low=0, high=MAX_SYNTHETIC_PHOTOS, step=500, unit="photos",
                                    help="Mix phone-like photos of this many training images (a coloured, patterned garment on a "
                                         "bed, a table or a floor, through Predict's preprocessing) into every batch, a quarter "
                                         "of it, so the model learns what photos look like once cut to 28x28. Made once "
                                         "(~0.1 s a photo), then cached; 0 = off.")
    tta: bool = setting(False, label="Flip TTA", kind="bool",
                        help="Test-time augmentation: every prediction of the model (its test figures, Predict, export) "
                             "averages the image and its mirror image. Use it with Augmentation: a model that never saw "
                             "mirrored items gets worse, not better.")
    seed: int = setting(0, label="Seed", kind="int", low=0, high=2**31 - 1, step=1,
                        help="Same seed and config on the same machine: the same numbers.")
    device: str = setting("auto", label="Device", kind="choice", choices=DEVICES, advanced=True, sweepable=False,
                          help="auto = CUDA when present, else the CPU.")
    threads: int = setting(0, label="Threads", kind="int", low=0, high=MAX_THREADS, step=1, advanced=True, sweepable=False,
                           help="torch threads; 0 = auto: the cores not busy with other work (from the command line), "
                                "less one in the app (left for the server and the browser).")
    precision: str = setting("fp32", label="Precision", kind="choice", choices=PRECISIONS,
                             help="bf16: mixed-precision training (autocast), up to 2x faster on CPUs with AVX-512 BF16/AMX "
                                  "and on recent GPUs, but ~10x slower on other CPUs, which emulate it; auto: bf16 where "
                                  "it is native, else fp32. Accuracy is always measured in fp32.")
    channels_last: bool = setting(False, label="Channels last", kind="bool",
                                  help="NHWC memory format: faster convolutions on CPU (conv models).")
    softmax_output: bool = setting(False, label="Softmax output", kind="bool", advanced=True,
                                   help="cnn_b only: the report's double-softmax quirk, to reproduce its published row.")
    width: int | None = setting(None, label="Width", kind="int", low=4, high=MAX_WIDTH, optional=True, step=8, unit="channels",
                                help="Channels of the first conv layer of vgg11 (64) and our CNNs (32); "
                                     "later layers scale with it. Empty = the model's default.")
    validation: int = setting(0, label="Validation images", kind="int", low=0, high=30_000, step=1000, advanced=True,
                              help="Hold out this many training images to tune on (never the test set).")
    ema: float = setting(0.0, label="EMA decay", kind="float", low=0.0, high=0.99999, step=0.001, advanced=True,
                         help="Decay of an exponential moving average of the weights, which is then evaluated; 0 = off.")
    name: str = setting("", label="Run name", kind="text", high=MAX_NAME_LENGTH, sweepable=False,
                        help="A label shown in the app; optional.")
    # Where training starts and what it mixes in: paths or names, not hyperparameters, so they
    # are command-line only (`train --from`, `--photos`; fmnist_core.training.finetune) and not on the
    # form nor in a sweep's space. What they resolved to (hashes, split) is kept in `extra`.
    init_from: str = ""  # a checkpoint (run folder or .safetensors) whose weights training starts from; "" = fresh
    photos: str = ""  # a photo set (a folder of class subfolders, or a stored set's name) mixed into training
    extra: dict = field(default_factory=dict)  # ignored by training; kept with the run

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad field and its allowed values."""
        for name, declared in SETTINGS.items():
            declared.check(name, getattr(self, name))
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov", "Nesterov momentum needs optimizer 'sgd' with momentum > 0")
        if self.softmax_output and self.model != "cnn_b":
            raise ConfigError("softmax_output", "the softmax-output quirk exists only for model 'cnn_b'")
        if self.synthetic_photos and self.photos:
            raise ConfigError("synthetic_photos", "mix in either a photo set (--photos) or synthetic photos, not both")
        for name in SOURCE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_SOURCE_LENGTH:
                raise ConfigError(name, f"{value!r:.60} is not a path or name of at most {MAX_SOURCE_LENGTH} characters")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("device", "CUDA is not available on this machine; use 'auto' or 'cpu'")
        return self

    def model_kwargs(self) -> dict:
        """Constructor arguments for create_model, given this config."""
        unused = unused_settings(self.to_dict())
        kwargs: dict = {}
        if self.dropout is not None and "dropout" not in unused:
            kwargs["dropout"] = self.dropout
        if self.softmax_output:
            kwargs["softmax_output"] = True
        if self.width is not None and "width" not in unused:
            kwargs["width"] = self.width
        if self.patch:
            kwargs["image_size"] = self.patch
        if self.tta:
            kwargs["tta"] = True
        return kwargs

    def resolved_threads(self, cores_kept_free: int = 0) -> int:
        """The torch threads to train with: `threads`, or for 0 (auto) the cores free right
        now but `cores_kept_free` (the app keeps one for its server and the visitor's
        browser); the rule is threads.choose_threads."""
        if self.threads:
            return self.threads
        return auto_threads(cores_kept_free)

    def resolved_precision(self, device_type: str) -> str:
        """"fp32" or "bf16": `precision`, or for auto bf16 only where `device_type` computes it
        natively (hardware.native_bf16)."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if native_bf16(device_type) else "fp32"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict (a saved config, a form); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting; known settings are: {', '.join(sorted(known))}")
        return cls(**values)


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in dataclasses.fields(TrainConfig) if "setting" in f.metadata}
DEFAULTS: dict[str, Any] = {name: f.default for name, f in TrainConfig.__dataclass_fields__.items() if name in SETTINGS}


def unused_settings(values: dict) -> set[str]:
    """The settings a config with these values trains without, whatever their value: dropout
    on a model without dropout, width on a model without a width, momentum with adam or
    adamw, Nesterov without SGD momentum, the softmax quirk on a model other than cnn_b.
    The one rule behind model_kwargs, the Train form (it greys these out and leaves them out
    of its summary) and Compare's config differences. Missing values are the defaults."""
    v = {**DEFAULTS, **values}
    unused = set()
    if v["model"] in list_models():
        info = model_info(v["model"])
        if info.default_dropout is None:
            unused.add("dropout")
        if not info.takes_width:
            unused.add("width")
    if v["model"] != "cnn_b":
        unused.add("softmax_output")
    if v["optimizer"] not in ("sgd", "rmsprop"):
        unused.add("momentum")
    if v["optimizer"] != "sgd" or not v["momentum"]:
        unused.add("nesterov")
    return unused


def effective_settings(values: dict) -> dict[str, Any]:
    """What a config (a saved one, possibly older than some settings) trains with, setting by
    setting: a missing setting at its default (as from_dict reads it), an empty dropout or
    width as the model's own default (what its builder takes when model_kwargs passes none),
    and none of unused_settings."""
    v = {**DEFAULTS, **{name: value for name, value in values.items() if name in SETTINGS}}
    unused = unused_settings(v)
    for name in ("dropout", "width"):
        if v[name] is None and name not in unused and v["model"] in list_models():
            parameter = inspect.signature(model_info(v["model"]).builder).parameters.get(name)
            v[name] = parameter.default if parameter is not None else None
    return {name: value for name, value in v.items() if name not in unused}



def config_problems(values: dict) -> dict[str, str]:
    """Every invalid setting in `values` (a form's or a URL's), {field: message}; empty when
    TrainConfig(**values).validate() would pass. Cross-field rules are checked once every
    field is valid on its own."""
    problems = {}
    for name, declared in SETTINGS.items():
        try:
            declared.check(name, values.get(name, DEFAULTS[name]))
        except ConfigError as e:
            problems[name] = e.message
    if not problems:
        try:
            TrainConfig.from_dict(values).validate()
        except ConfigError as e:
            problems[e.field] = e.message
    return problems
