"""A sweep's search space: what varies, over which values, checked before anything starts.

A space is written as the CLI takes it (and the Sweep page builds it):
    --grid lr=0.01,0.05,0.1              every listed value (all combinations with other grids)
    --sample lr=loguniform:1e-4:0.3      drawn per trial; also uniform:LOW:HIGH,
    --sample batch_size=randint:32:256   randint:LOW:HIGH (both ends included) and
    --sample optimizer=choice:sgd,adam   choice:A,B,...
Every name, value and range is checked against the setting's one declaration
(config.SETTINGS): an unknown hyperparameter, a setting a sweep may not vary, a value out
of range or a value that breaks a cross-field rule of the base config is a UserError
naming the flag, before Ray is started. This module does not import Ray; `to_tune()`
turns a checked space into Ray Tune's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import SETTINGS, ConfigError, TrainConfig

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")


class SpaceError(UserError):
    """A bad --grid or --sample; the message names it and says how to fix it."""


@dataclass(frozen=True)
class Dimension:
    """One varied setting. kind: "grid" or "choice" (values), or "loguniform", "uniform",
    "randint" (low, high; both included)."""

    name: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        if self.kind in ("grid", "choice"):
            return f"{self.name}={self.kind}:{','.join(map(str, self.values))}" if self.kind == "choice" else f"{self.name}={','.join(map(str, self.values))}"
        return f"{self.name}={self.kind}:{self.low:g}:{self.high:g}"

    def corners(self) -> tuple:
        """The values that bound this dimension: every grid/choice value, both range ends."""
        return self.values if self.kind in ("grid", "choice") else (self.low, self.high)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_arg(self) -> str:
        """The one command-line argument that parses back to this dimension, exactly
        (`--grid=lr=0.01,0.05`, `--sample=lr=loguniform:0.0001:0.3`; floats as repr)."""
        if self.kind == "grid":
            return f"--grid={self.name}={','.join(map(arg_text, self.values))}"
        if self.kind == "choice":
            return f"--sample={self.name}=choice:{','.join(map(arg_text, self.values))}"
        return f"--sample={self.name}={self.kind}:{arg_text(self.low)}:{arg_text(self.high)}"


def arg_text(value) -> str:
    """A setting's value as command-line text that parses back to it exactly."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def sweepable_settings() -> list[str]:
    return [name for name, declared in SETTINGS.items() if declared.sweepable]


def _setting(name: str, flag: str):
    name = name.strip().replace("-", "_")
    if name not in SETTINGS:
        raise SpaceError(f"{flag}: unknown hyperparameter '{name}'; a sweep can vary: {', '.join(sweepable_settings())}")
    declared = SETTINGS[name]
    if not declared.sweepable:
        raise SpaceError(f"{flag}: '{name}' cannot vary within a sweep (set it once for every trial with --{name.replace('_', '-')}); "
                         f"a sweep can vary: {', '.join(sweepable_settings())}")
    return name, declared


def _split(text: str, flag: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise SpaceError(f"{flag} {text!r}: write NAME=VALUES, e.g. {flag} lr=0.01,0.05")
    return name, rest.strip()


def _value(declared, name: str, text: str, flag: str):
    try:
        value = declared.parse(text)
        declared.check(name, value)
    except ConfigError as e:
        raise SpaceError(f"{flag} {name}: {e.message}") from None
    except UserError as e:
        raise SpaceError(f"{flag} {name}: {e}") from None
    return value


def _values(declared, name: str, text: str, flag: str) -> tuple:
    values = tuple(_value(declared, name, part, flag) for part in text.split(",") if part.strip())
    if not values:
        raise SpaceError(f"{flag} {name}: give at least one value")
    if len(set(values)) != len(values):
        raise SpaceError(f"{flag} {name}: a value is listed twice")
    return values


def parse_grid(text: str) -> Dimension:
    """`lr=0.01,0.05,0.1` -> a grid dimension (each value checked against its setting)."""
    name, rest = _split(text, "--grid")
    name, declared = _setting(name, "--grid")
    return Dimension(name, "grid", _values(declared, name, rest, "--grid"))


def parse_sample(text: str) -> Dimension:
    """`lr=loguniform:1e-4:0.3`, `batch_size=choice:32,64`, `dropout=uniform:0:0.5`, `seed=randint:0:9`."""
    name, rest = _split(text, "--sample")
    name, declared = _setting(name, "--sample")
    kind, _, args = rest.partition(":")
    kind = kind.strip()
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"--sample {name}: unknown distribution '{kind}'; use {', '.join(DISTRIBUTIONS)} (e.g. {name}=choice:A,B)")
    if kind == "choice":
        return Dimension(name, "choice", _values(declared, name, args, "--sample"))
    wanted = "int" if kind == "randint" else "float"
    if declared.kind != wanted:
        what = {"int": "whole-number", "float": "real-valued", "choice": "one-of-a-list", "bool": "on/off", "text": "text"}[declared.kind]
        hint = "randint" if declared.kind == "int" else "choice"
        raise SpaceError(f"--sample {name}: {kind} needs a {wanted} setting and {name} is {what}; use {name}={hint}:...")
    ends = args.split(":")
    if len(ends) != 2:
        raise SpaceError(f"--sample {name}: write {name}={kind}:LOW:HIGH")
    low, high = (_value(declared, name, end, "--sample") for end in ends)
    if not low < high:
        raise SpaceError(f"--sample {name}: LOW ({low:g}) must be below HIGH ({high:g})")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"--sample {name}: loguniform needs LOW > 0 (got {low:g}); use uniform to include 0")
    return Dimension(name, kind, low=low, high=high)


def parse_space(grids: list[str] | None, samples: list[str] | None) -> list[Dimension]:
    """Every --grid and --sample, parsed and checked; a name may appear once."""
    space = [parse_grid(g) for g in grids or []] + [parse_sample(s) for s in samples or []]
    if not space:
        raise SpaceError("the search space is empty: vary at least one setting, e.g. --grid lr=0.01,0.05 or --sample lr=loguniform:1e-4:0.3")
    seen = set()
    for dim in space:
        if dim.name in seen:
            raise SpaceError(f"'{dim.name}' is varied twice; give it one --grid or one --sample")
        seen.add(dim.name)
    return space


def check_against(space: list[Dimension], base: TrainConfig) -> None:
    """Every grid value and range end, put into the base config, passes TrainConfig.validate
    (cross-field rules too: Nesterov needs SGD, the softmax quirk needs cnn_b)."""
    for dim in space:
        for value in dim.corners():
            try:
                dataclasses.replace(base, **{dim.name: value}).validate()
            except ConfigError as e:
                raise SpaceError(f"{dim.name}={value}: {e.field}: {e.message}") from None


def grid_size(space: list[Dimension]) -> int:
    return math.prod(len(d.values) for d in space if d.kind == "grid")


def has_samples(space: list[Dimension]) -> bool:
    return any(d.kind != "grid" for d in space)


def to_tune(space: list[Dimension]) -> dict:
    """Ray Tune's param_space for a checked space (imports Ray: call it in the driver only)."""
    from ray import tune

    out = {}
    for dim in space:
        if dim.kind == "grid":
            out[dim.name] = tune.grid_search(list(dim.values))
            continue
        if dim.kind == "choice":
            out[dim.name] = tune.choice(list(dim.values))
            continue
        assert dim.low is not None and dim.high is not None  # a range's bounds (Dimension's parser sets both)
        if dim.kind == "loguniform":
            out[dim.name] = tune.loguniform(dim.low, dim.high)
        elif dim.kind == "uniform":
            out[dim.name] = tune.uniform(dim.low, dim.high)
        else:  # randint: ours includes HIGH, Ray's excludes it
            out[dim.name] = tune.randint(int(dim.low), int(dim.high) + 1)
    return out


def from_dicts(rows: list[dict]) -> list[Dimension]:
    """A space saved in a sweep record, back as Dimensions."""
    return [Dimension(r["name"], r["kind"], tuple(r.get("values") or ()), r.get("low"), r.get("high")) for r in rows]
