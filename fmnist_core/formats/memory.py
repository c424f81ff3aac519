"""How much memory a run will need, estimated before anything real is allocated.

The model is built on PyTorch's `meta` device (shapes and dtypes, no storage) and one
forward pass runs on a meta batch with hooks summing every layer's output: what
autograd keeps for the backward pass is roughly those outputs, plus what functional
ops (residual adds, F.relu) and max-pool indices save and the gradients in flight while
it runs, together about half as much again (BACKWARD_FACTOR). Parameters
count several times (weights, gradients, the optimizer's state, an EMA copy). The run's
normalised copy of the data set and torch's own first-use workspaces are fixed. The test
set is scored in batches of EVAL_BATCH without gradients, so evaluation's peak is one
layer's input and output.

Checked against the peak RSS growth of two real steps and one evaluation batch in a
fresh process (tests/app/test_access.py): 0.74x (resnet_fm, batch 256) to 1.04x (cnn_c,
batch 2048) of the measured peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fmnist_core.images.data import IMAGE_SIZE, tiles_per_image
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import create_model
from fmnist_core.use.scoring import EVAL_BATCH

FLOAT_BYTES = 4  # weights, gradients, optimizer state and activations are fp32 (bf16 is autocast only)
DATA_BYTES = 70_000 * 28 * 28 * FLOAT_BYTES  # train + test images, normalised to float32 by every run
# torch's kernels, oneDNN workspaces and allocator pools on a run's first step: the
# peak RSS growth of one step of cnn_c or mlp4 at batch size 1, measured here.
RUNTIME_OVERHEAD = 180_000_000
# Training's peak over the sum of the leaf layers' outputs: 1.5 put the estimate at
# 0.74-1.04x of measured peaks for cnn_c (batch 1 to 2048), vgg11 and resnet_fm.
BACKWARD_FACTOR = 1.5
GB = 1e9
# The settings estimate_memory reads (through model_kwargs and optimizer_copies too): a
# sweep checks its trials' memory over every combination of these it can draw.
SIZE_SETTINGS = ("model", "width", "batch_size", "patch", "optimizer", "momentum", "ema", "dropout", "softmax_output", "tta")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at its peak, by part."""

    parameters: int  # weights, their gradients, the optimizer's state and an EMA copy
    activations: int  # what one training step keeps for backward, or evaluation's peak
    fixed: int  # the run's normalised copy of Fashion-MNIST, and torch's workspaces

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.fixed

    def describe(self) -> str:
        """'~6.6 GB' (or MB below 1 GB), as a message shows it."""
        return format_bytes(self.total)


def machine_memory() -> int | None:
    """This machine's physical memory in bytes (Linux's /proc/meminfo; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_bytes(n: float) -> str:
    return f"~{n / GB:.1f} GB" if n >= GB else f"~{n / 1e6:.0f} MB"


def optimizer_copies(config: TrainConfig) -> int:
    """Parameter-sized tensors the optimizer keeps: Adam's two moments, a momentum buffer,
    RMSprop's square average (plus its momentum buffer)."""
    if config.optimizer in ("adam", "adamw"):
        return 2
    if config.optimizer == "rmsprop":
        return 1 + (config.momentum > 0)
    return int(config.momentum > 0)


def _layer_outputs(model: nn.Module, batch: int, size: int) -> tuple[int, int]:
    """(sum, largest) of every leaf layer's output bytes for one forward of `batch` images
    of `size` x `size`, on the meta device: shapes only, nothing allocated."""
    total = largest = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal total, largest
        if isinstance(output, torch.Tensor):
            n = output.numel() * FLOAT_BYTES
            total, largest = total + n, max(largest, n)

    leaves = [m for m in model.modules() if not any(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.empty(batch, 1, size, size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total, largest


def estimate_memory(config: TrainConfig) -> MemoryEstimate:
    """The peak memory a run of `config` needs (config already validated)."""
    with torch.device("meta"):
        model = create_model(config.model, **config.model_kwargs())
    n_params = sum(p.numel() for p in model.parameters())
    copies = 2 + optimizer_copies(config) + (config.ema > 0)  # weights + gradients + state + EMA
    tiles = tiles_per_image(config.patch)
    size = config.patch or IMAGE_SIZE
    train_outputs, _ = _layer_outputs(model.train(), config.batch_size * tiles, size)
    # Evaluation without gradients holds a layer's input and output at once.
    _, eval_largest = _layer_outputs(model.eval(), EVAL_BATCH * tiles, size)
    return MemoryEstimate(
        parameters=n_params * FLOAT_BYTES * copies,
        activations=max(int(BACKWARD_FACTOR * train_outputs), 2 * eval_largest),
        fixed=DATA_BYTES + RUNTIME_OVERHEAD,
    )
