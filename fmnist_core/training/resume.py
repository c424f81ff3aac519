"""What resuming a run needs, saved after each finished epoch: `resume.safetensors`.

model.safetensors holds the weights a user predicts with (the EMA average when EMA is
on); continuing the training exactly also needs the training weights, the optimizer's
and scheduler's state, the EMA average and every random state. They go in one
safetensors file beside it (tensors + JSON metadata; still no pickle), written
atomically, so a run resumed from epoch k gives the same numbers as one never stopped.

    model.<name>          the training model's state_dict
    ema.<name>            the EMA model's state_dict (when EMA is on)
    optimizer.<i>.<key>   optimizer state tensors per parameter index
    rng.generator         the run's torch.Generator (batch order, augmentation)
    rng.torch             torch's global CPU generator (dropout)
    metadata: format, epoch, history, optimizer param groups and non-tensor state, scheduler
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_write
from fmnist_core.formats.run_files import HISTORY_LINE, FileProblem, check_shape

RESUME_NAME = "resume.safetensors"
FORMAT = "fmnist-studio-resume/1"


class ResumeError(UserError):
    """A run cannot be resumed: no resume state, or a damaged one."""


@dataclass
class ResumeState:
    epoch: int  # the last finished epoch
    history: list[dict]  # its history lines, epochs 1..epoch
    model: dict[str, torch.Tensor]
    optimizer: dict  # Optimizer.state_dict()
    scheduler: dict  # LRScheduler.state_dict() (plain numbers)
    ema: dict[str, torch.Tensor] | None
    generator: torch.Tensor  # uint8, torch.Generator.get_state()
    torch_rng: torch.Tensor  # uint8, torch.get_rng_state()


def capture(epoch, history, model, optimizer, scheduler, ema, generator) -> ResumeState:
    """The state after `epoch` (references, not copies: save it before training goes on)."""
    return ResumeState(epoch, list(history), model.state_dict(), optimizer.state_dict(), scheduler.state_dict(),
                       ema.state_dict() if ema is not None else None, generator.get_state(), torch.get_rng_state())


def restore(state: ResumeState, model, optimizer, scheduler, ema, generator) -> None:
    """Put every piece of `state` back, so the next epoch is the one an unbroken run trains."""
    try:
        model.load_state_dict(state.model, strict=True)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        if ema is not None:
            if state.ema is None:
                raise ResumeError("the resume state has no EMA weights but the run uses EMA")
            ema.load_state_dict(state.ema, strict=True)
        generator.set_state(state.generator)
        torch.set_rng_state(state.torch_rng)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ResumeError(f"the resume state does not fit this run ({first})") from e


def save_resume(path: Path, state: ResumeState) -> None:
    """Write `state` to `path` atomically (temp file + rename)."""
    tensors = {f"model.{k}": v for k, v in state.model.items()}
    if state.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in state.ema.items()})
    scalars: dict[str, dict] = {}
    for index, values in state.optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.generator"] = state.generator
    tensors["rng.torch"] = state.torch_rng
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {
        "format": FORMAT, "epoch": str(state.epoch), "history": json.dumps(state.history),
        "param_groups": json.dumps(state.optimizer["param_groups"]), "optimizer_scalars": json.dumps(scalars),
        "scheduler": json.dumps(state.scheduler),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), epoch=state.epoch)


def load_resume(path: Path) -> ResumeState:
    """Read and check a resume file; ResumeError (one line) when it is missing or damaged."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        raise ResumeError(f"no resume state in {path.parent} (runs save one after each epoch; this one finished none, "
                          "or predates resuming): train it again instead")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if raw.get("format") != FORMAT:
            raise ValueError("not a resume file")
        epoch = int(raw["epoch"])
        history = [check_shape("history", line, HISTORY_LINE) for line in json.loads(raw["history"])]
        if epoch < 1 or [h["epoch"] for h in history] != list(range(1, epoch + 1)):
            raise ValueError(f"its history does not end at epoch {epoch}")
        optimizer_state: dict[int, dict] = {}
        for index, values in json.loads(raw["optimizer_scalars"]).items():
            optimizer_state.setdefault(int(index), {}).update(values)
        for name, tensor in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                optimizer_state.setdefault(int(index), {})[key] = tensor
        return ResumeState(
            epoch=epoch, history=history,
            model={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer={"state": optimizer_state, "param_groups": json.loads(raw["param_groups"])},
            scheduler=json.loads(raw["scheduler"]),
            ema={k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")} or None,
            generator=tensors["rng.generator"], torch_rng=tensors["rng.torch"],
        )
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, FileProblem) as e:
        raise ResumeError(f"the resume state in {path.parent} is damaged ({e}); train the run again instead") from e
