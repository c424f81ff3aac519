"""Weight-initialisation schemes, applied to Linear and Conv2d layers after construction.

'default' keeps PyTorch's own (Kaiming-uniform with a=sqrt(5)). 'custom' is the
report's finding: Normal for Linear layers, He (Kaiming) for conv layers.
"""

from __future__ import annotations

from torch import nn

from fmnist_core.base.errors import UserError

INIT_SCHEMES = ("default", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "normal", "custom")
NORMAL_STD = 0.01  # std of the 'normal' scheme; small enough that deep MLPs do not saturate


def _he(weight, uniform: bool) -> None:
    (nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_)(weight, nonlinearity="relu")


def _init_layer(layer: nn.Linear | nn.Conv2d, scheme: str) -> None:
    weight = layer.weight
    if scheme == "xavier_normal":
        nn.init.xavier_normal_(weight)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(weight)
    elif scheme == "he_normal":
        _he(weight, uniform=False)
    elif scheme == "he_uniform":
        _he(weight, uniform=True)
    elif scheme == "normal":
        nn.init.normal_(weight, 0.0, NORMAL_STD)
    elif scheme == "custom":
        if isinstance(layer, nn.Conv2d):
            _he(weight, uniform=False)
        else:
            nn.init.normal_(weight, 0.0, NORMAL_STD)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise every Linear and Conv2d weight of `model` in place (biases to 0)."""
    if scheme not in INIT_SCHEMES:
        raise UserError(f"unknown init '{scheme}'. Choose one of: {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return model
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            _init_layer(layer, scheme)
    return model
