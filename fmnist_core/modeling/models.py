"""Model registry: the report's five models (Figure 2, layer for layer), VGG11, and ours.

Every builder takes keyword arguments only, and those arguments are stored in the
checkpoint, so `create_model(name, **args)` rebuilds any saved model. Models return
logits for (B, 1, S, S) inputs, S = 28 or the patch size when training on tiles.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fmnist_core.base.errors import UserError
from fmnist_core.images.data import CLASSES, IMAGE_SIZE

NUM_CLASSES = len(CLASSES)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    from_report: bool  # one of the report's Figure 2 models
    default_dropout: float | None  # None: the model has no dropout to tune

    @property
    def takes_width(self) -> bool:
        """Whether `width` (first conv layer's channels) is one of the builder's arguments."""
        return "width" in self.builder.__code__.co_varnames


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(description: str, *, from_report: bool = False):
    def wrap(builder: Callable[..., nn.Module]):
        # The default dropout is the builder's own default, declared once in its signature.
        dropout = inspect.signature(builder).parameters.get("dropout")
        default_dropout = dropout.default if dropout is not None else None
        _REGISTRY[builder.__name__] = ModelInfo(builder.__name__, builder, description, from_report, default_dropout)
        return builder

    return wrap


def list_models() -> list[str]:
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise UserError(f"unknown model '{name}'. Choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# Arguments every model takes, handled here rather than by its builder: they change how
# the model is scored (scoring.ImageClassifier), not its layers.
SCORING_ARGS = ("tta",)


def create_model(name: str, tta: bool = False, **kwargs) -> nn.Module:
    """Build a registered model; `model.build_args` keeps what rebuilds it.
    `tta`: the model is scored on the image and its mirror image (scoring.ImageClassifier)."""
    model = model_info(name).builder(**kwargs)
    model.model_name = name  # type: ignore[assignment]  # torch types Module attributes as Tensor | Module; a plain attribute is fine at runtime
    model.build_args = {**kwargs, "tta": True} if tta else dict(kwargs)  # type: ignore[assignment]  # as above
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Classifier(nn.Module):
    """features -> flatten -> classifier. Flattening happens in forward (as the report's
    code did), so the layer table shows exactly the report's rows."""

    def __init__(self, features: nn.Module, classifier: nn.Module):
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _flat_size(features: nn.Module, image_size: int) -> int:
    """Width of the flattened feature map for an image_size x image_size input."""
    with torch.no_grad():
        features.eval()
        size = features(torch.zeros(1, 1, image_size, image_size)).numel()
        features.train()
    return size


def _dropout_linear_head(features: nn.Module, dropout: float, image_size: int) -> Classifier:
    """features -> flatten -> Dropout -> Linear to the classes, sized to the flattened map."""
    return Classifier(features, nn.Sequential(nn.Dropout(dropout), nn.Linear(_flat_size(features, image_size), NUM_CLASSES)))


def _mlp(sizes: list[int], activation: Callable[[], nn.Module], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers += [activation(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


# ---- the report's five models ------------------------------------------------------


@register_model("Report model 1: MLP 784-500-250-250-10, ReLU, Dropout", from_report=True)
def mlp4(dropout: float = 0.2, image_size: int = IMAGE_SIZE) -> nn.Module:
    return Classifier(nn.Identity(), _mlp([image_size**2, 500, 250, 250, NUM_CLASSES], nn.ReLU, dropout))


@register_model("Report model 2: MLP 784-900-500-450-250-10, LeakyReLU, Dropout", from_report=True)
def mlp_custom(dropout: float = 0.2, image_size: int = IMAGE_SIZE) -> nn.Module:
    return Classifier(nn.Identity(), _mlp([image_size**2, 900, 500, 450, 250, NUM_CLASSES], nn.LeakyReLU, dropout))


@register_model("Report model 3: two tiny conv blocks (4 channels, BN), Linear 196-10", from_report=True)
def cnn_a(image_size: int = IMAGE_SIZE) -> nn.Module:
    features = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # (B, 4, 14, 14)
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # (B, 4, 7, 7)
    )
    return Classifier(features, nn.Linear(_flat_size(features, image_size), NUM_CLASSES))


@register_model("Report model 4: conv 32 (pad 1x0), Linear 5824-100-10 (optional final Softmax quirk)", from_report=True)
def cnn_b(softmax_output: bool = False, image_size: int = IMAGE_SIZE) -> nn.Module:
    """softmax_output=True reproduces the report's model, whose Softmax output was fed to
    CrossEntropyLoss (a double softmax: the loss cannot fall below ~1.46 and learning is
    slow). The default returns logits, as CrossEntropyLoss expects."""
    features = nn.Sequential(nn.Conv2d(1, 32, 3, padding=(1, 0)), nn.ReLU(), nn.MaxPool2d(2))  # (B, 32, 14, 13)
    head: list[nn.Module] = [nn.Linear(_flat_size(features, image_size), 100), nn.ReLU(), nn.Linear(100, NUM_CLASSES)]
    if softmax_output:
        head.append(nn.Softmax(dim=1))
    return Classifier(features, nn.Sequential(*head))


@register_model("Report model 5: conv 32 + conv 4 (BN), MLP 168-100-150-10, LeakyReLU, Dropout", from_report=True)
def cnn_c(dropout: float = 0.2, image_size: int = IMAGE_SIZE) -> nn.Module:
    features = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=(1, 0)), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 13)
        nn.Conv2d(32, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),  # (B, 4, 7, 6)
    )
    return Classifier(features, _mlp([_flat_size(features, image_size), 100, 150, NUM_CLASSES], nn.LeakyReLU, dropout))


# ---- VGG11 and our own models ------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, pool_first: bool = False) -> list[nn.Module]:
    """conv -> BN -> ReLU, or with `pool_first` conv -> 2x2 max-pool -> BN -> ReLU (airbench's
    order): BN and ReLU then run on a quarter of the pixels. Max-pooling commutes with an
    increasing per-channel map, so where BN's scale is positive this is conv-BN-ReLU-pool but
    for BN's batch statistics, which come from the pooled pixels."""
    pool = [nn.MaxPool2d(2)] if pool_first else []
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), *pool, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register_model("VGG11 with BatchNorm, adapted to 28x28 (3 pools, global average pool)")
def vgg11(dropout: float = 0.5, width: int = 64, image_size: int = IMAGE_SIZE) -> nn.Module:
    """VGG11's eight 3x3 conv layers (64-128-256-256-512-512-512-512). The original
    five 2x2 pools would shrink 28x28 to below 1x1 (the report's "size
    inconsistencies"), so only the first three pool (28->14->7->3) and a global
    average pool replaces the 25,088-wide classifier input. `width` is the first layer's
    channels, as for our models (64 = VGG11); the others scale with it."""
    plan: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, 512, 512]
    layers: list[nn.Module] = []
    c_in = 1
    for item in plan:
        if isinstance(item, str):  # "M"
            layers.append(nn.MaxPool2d(2))
        else:
            c_out = max(8, item * width // 64)
            layers += _conv_bn(c_in, c_out)
            c_in = c_out
    layers.append(nn.AdaptiveAvgPool2d(1))
    return _dropout_linear_head(nn.Sequential(*layers), dropout, image_size)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (He et al., 2016)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


# The counts are checked against the built model by tests/core/test_models.py.
@register_model("Ours, for speed (the fast_v1 recipe): 2 conv-BN blocks (w, 2w channels), Linear 98w-10; 20,538 params at "
                "fast_v1's width 16, 50,282 params at its default width 32")
def fast_cnn(dropout: float = 0.1, width: int = 32, image_size: int = IMAGE_SIZE) -> nn.Module:
    """Few multiply-adds per image (~4M at width 32): on 2 CPU cores the time per epoch is
    what limits time-to-90%, and a flattened 7x7 map keeps the spatial layout that a
    global pool would throw away."""
    w = width
    features = nn.Sequential(
        *_conv_bn(1, w), nn.MaxPool2d(2),  # (B, w, 14, 14)
        *_conv_bn(w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
    )
    return _dropout_linear_head(features, dropout, image_size)


# The counts are checked against the built models by tests/core/test_models.py.
@register_model("Ours, for speed (the fast recipe): fast_cnn with each max-pool before its BatchNorm and ReLU, "
                "dropout off by default; 20,538 params at fast's width 16")
def fast_cnn_v2(dropout: float = 0.0, width: int = 32, image_size: int = IMAGE_SIZE) -> nn.Module:
    """fast_cnn's layers at 1.5x its training steps per second (batch 64, 2 threads: 6.8
    against 10.6 ms): BatchNorm and ReLU were most of a step's time, and they now run on pooled
    maps. Dropout's random mask cost ~1.4 ms of that step and did not help a 2-epoch run."""
    w = width
    features = nn.Sequential(*_conv_bn(1, w, pool_first=True), *_conv_bn(w, 2 * w, pool_first=True))  # (B, 2w, 7, 7)
    return _dropout_linear_head(features, dropout, image_size)


@register_model("Ours, for the balanced and accurate recipes: airbench's layout, 5 conv-BN-ReLU layers (w, 2w, 2w, 4w, 4w) "
                "with a 2x2 max-pool after the 2nd and 4th conv, before their BatchNorm; no residuals, global max pool; "
                "70,330 params at balanced's width 16")
def air_cnn(dropout: float = 0.0, width: int = 32, image_size: int = IMAGE_SIZE) -> nn.Module:
    """resnet_fm's stages with one conv per residual block and each pool moved before its
    BatchNorm (as in airbench, the fastest CIFAR-10 trainer): at width 16, 0.5-0.6x the time
    per training image of resnet_fm (bench section 4, their recipes' batches), and the same
    validation accuracy after 5 epochs at twice the batch size."""
    w = width
    features = nn.Sequential(
        *_conv_bn(1, w),  # (B, w, 28, 28)
        *_conv_bn(w, 2 * w, pool_first=True), *_conv_bn(2 * w, 2 * w),  # (B, 2w, 14, 14)
        *_conv_bn(2 * w, 4 * w, pool_first=True), *_conv_bn(4 * w, 4 * w),  # (B, 4w, 7, 7)
        nn.AdaptiveMaxPool2d(1),  # (B, 4w, 1, 1)
    )
    return _dropout_linear_head(features, dropout, image_size)


@register_model("Ours, for accuracy: ResNet-style, 3 stages (32-64-128) with residual blocks, BN")
def resnet_fm(dropout: float = 0.1, width: int = 32, image_size: int = IMAGE_SIZE) -> nn.Module:
    w = width
    features = nn.Sequential(
        *_conv_bn(1, w),  # (B, w, 28, 28)
        *_conv_bn(w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, 14, 14)
        ResidualBlock(2 * w),
        *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, 7, 7)
        ResidualBlock(4 * w),
        nn.AdaptiveMaxPool2d(1),  # (B, 4w, 1, 1)
    )
    return _dropout_linear_head(features, dropout, image_size)


# ---- the report's layer table --------------------------------------------------------


def layer_table(model: nn.Module, image_size: int = IMAGE_SIZE) -> list[tuple[str, list[int], int]]:
    """Rows (layer, output shape, params) in call order, as torchsummary prints them.

    Leaf modules only (containers are not layers); nn.Identity is skipped, it is a
    placeholder for "no feature extractor" in the MLPs."""
    rows: list[tuple[str, list[int], int]] = []
    counter = {"n": 0}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        counter["n"] += 1
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append((f"{type(module).__name__}-{counter['n']}", [-1, *output.shape[1:]], params))

    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, 1, image_size, image_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def summary(model: nn.Module, image_size: int = IMAGE_SIZE) -> str:
    """The report's Figure 2 format: Layer (type), Output Shape, Param #."""
    rows = layer_table(model, image_size)
    lines = [f"{'Layer (type)':<24}{'Output Shape':<24}{'Param #':>12}", "=" * 60]
    for name, shape, params in rows:
        lines.append(f"{name:<24}{str(shape):<24}{params:>12,}")
    lines += ["=" * 60, f"Total params: {count_parameters(model):,}"]
    return "\n".join(lines)
