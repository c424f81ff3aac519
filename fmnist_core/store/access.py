"""Who may do what: visitors, owners, admins and the limits of shared mode.

Local mode (the default, `make run` on 127.0.0.1) is one person on their own machine:
everyone is an admin and nothing is limited but a run that needs more memory than the
machine has. Shared mode (FMNIST_STUDIO_MODE=shared)
serves a team or a class: every run has an owner, only its owner or an admin may stop,
rename or delete it, and training is limited (runs per visitor, queue length, memory
per run, largest width and batch size). The limits and the admins come from the
[studio] section of .streamlit/secrets.toml; the app reads that file and hands its
contents to `Policy.from_settings` (this package never imports Streamlit).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from fmnist_core.base.errors import UserError
from fmnist_core.formats.identity import SECRET_SETTING
from fmnist_core.formats.memory import GB, estimate_memory, machine_memory
from fmnist_core.modeling.config import SETTINGS, TrainConfig

MODE_VARIABLE = "FMNIST_STUDIO_MODE"
MODES = ("local", "shared")
LOCAL_OWNER = "local"  # the owner of runs started in local mode or by the CLI


class LimitError(UserError):
    """A run refused by a shared-mode limit; `field` names the form setting it is about
    (None for limits that are not one setting: queues, memory)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


class NotAllowed(UserError):
    """A visitor tried to change a run that is not theirs."""


@dataclass(frozen=True)
class Visitor:
    """Who is asking: a logged-in user (id = email), an anonymous browser session, or
    the local user."""

    id: str
    name: str
    is_admin: bool = False


@dataclass(frozen=True)
class Limits:
    """Shared mode's limits; the defaults suit a 2-core, 8 GB machine and a class."""

    runs_per_visitor: int = 2  # runs one visitor may have queued or training at once
    queue_length: int = 8  # runs queued or training, all visitors together
    memory_per_run_gb: float = 2.0  # the estimated peak of one run
    max_width: int = 128  # channels of a model's first conv layer
    max_batch_size: int = 1024  # images per step
    files_per_photoset: int = 500  # photos in one photo set (fmnist_core.store.photosets)
    bytes_per_photoset: int = 200 * 2**20  # their bytes together
    photosets_per_visitor: int = 5  # photo sets one visitor may keep
    # A sweep's trials are runs (each counts above, and is held to the limits above); the
    # sweep as a whole is held to these.
    trials_per_sweep: int = 16  # trials one sweep may plan in all
    trials_at_once: int = 2  # trials one sweep may train at the same time
    sweeps_per_visitor: int = 1  # sweeps one visitor may have starting or running at once

    @classmethod
    def from_dict(cls, values: Mapping) -> Limits:
        """Limits from a config file's [studio.limits]; missing keys keep their defaults.
        A bad key or value is one UserError naming it, so a typo never silently lifts a limit."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"[studio.limits] has no setting '{unknown[0]}'; the limits are: {', '.join(sorted(known))}")
        limits = cls(**values)
        for name in ("runs_per_visitor", "queue_length", "files_per_photoset", "bytes_per_photoset", "photosets_per_visitor",
                     "trials_per_sweep", "trials_at_once", "sweeps_per_visitor"):
            value = getattr(limits, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"[studio.limits] {name} = {value!r}: use a whole number of at least 1")
        memory = limits.memory_per_run_gb
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not memory > 0:
            raise UserError(f"[studio.limits] memory_per_run_gb = {memory!r}: use a number of gigabytes above 0")
        # The form's own ranges are declared once, in config.SETTINGS; a limit must lie within them.
        for name, setting in (("max_width", SETTINGS["width"]), ("max_batch_size", SETTINGS["batch_size"])):
            value = getattr(limits, name)
            assert setting.low is not None and setting.high is not None  # both are int settings with a range
            if isinstance(value, bool) or not isinstance(value, int) or not setting.low <= value <= setting.high:
                raise UserError(f"[studio.limits] {name} = {value!r}: use a whole number from {setting.describe_range()}")
        return limits


def studio_mode(environ: Mapping[str, str] = os.environ) -> str:
    """'local' or 'shared', from FMNIST_STUDIO_MODE (unset or empty: local)."""
    mode = environ.get(MODE_VARIABLE, "").strip().lower() or "local"
    if mode not in MODES:
        raise UserError(f"{MODE_VARIABLE}={environ[MODE_VARIABLE]!r} is not a mode; use 'local' or 'shared'")
    return mode


@dataclass(frozen=True)
class Policy:
    """The rules of one server: its mode, its admins and its limits."""

    mode: str = "local"
    admins: frozenset[str] = frozenset()  # user ids (emails), lower case
    limits: Limits = field(default_factory=Limits)
    login: bool = True  # whether visitors can log in ([auth] is set up): admins need it
    machine_bytes: int | None = field(default_factory=machine_memory)  # no run may need more, in any mode

    @classmethod
    def from_settings(cls, mode: str, studio: Mapping | None = None, login: bool = True) -> Policy:
        """The policy for `mode` from a [studio] section: `admins = ["a@b.c"]` and a
        [studio.limits] table (see Limits); `login`: whether secrets.toml has an [auth] section."""
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; use 'local' or 'shared'")
        studio = dict(studio or {})
        admins = studio.pop("admins", [])
        if not isinstance(admins, (list, tuple)) or not all(isinstance(a, str) for a in admins):
            raise UserError('[studio] admins must be a list of e-mail addresses, e.g. admins = ["ann@example.org"]')
        limits = Limits.from_dict(studio.pop("limits", {}))
        studio.pop(SECRET_SETTING, None)  # the anonymous identities' secret: identity.load_secret checks it
        if studio:
            raise UserError(f"[studio] has no setting '{sorted(studio)[0]}'; use admins, {SECRET_SETTING} and [studio.limits]")
        return cls(mode, frozenset(a.strip().lower() for a in admins), limits, login)

    @property
    def shared(self) -> bool:
        return self.mode == "shared"

    def visitor(self, user_id: str, name: str) -> Visitor:
        """A visitor with their role: in local mode everyone is an admin."""
        return Visitor(user_id, name, is_admin=not self.shared or user_id.lower() in self.admins)

    def local_visitor(self) -> Visitor:
        return self.visitor(LOCAL_OWNER, "you")

    @property
    def orphans_are_everyones(self) -> bool:
        """Whether anyone may cancel or resume an orphan: a shared Studio with no admin who can
        log in has nobody else to clear a queue its visitors left behind."""
        return self.shared and not (self.admins and self.login)

    def can_modify(self, visitor: Visitor, run_owner: str | None, orphan: bool = False) -> bool:
        """Whether `visitor` may stop, rename or delete a run (or sweep) owned by `run_owner`
        (None or "": a run from before owners, which only admins may change). `orphan`: the
        run outlived the server that queued or trained it, and the action is to cancel, stop
        or resume it; the command line's runs stay the command line's."""
        if visitor.is_admin or (bool(run_owner) and visitor.id == run_owner):
            return True
        return orphan and self.orphans_are_everyones and run_owner != LOCAL_OWNER

    def why_not(self, visitor: Visitor, run_owner: str | None, orphan: bool = False, what: str = "run") -> str | None:
        """Why `visitor` may not change the run (or sweep: `what`; None when they may), for a disabled button."""
        if self.can_modify(visitor, run_owner, orphan):
            return None
        if what == "sweep":
            return "Another visitor (or the command line) started this sweep: only they or an admin can stop or delete it."
        return "Another visitor started this run: only they or an admin can stop, rename or delete it."

    def check_modify(self, visitor: Visitor, run_owner: str | None, action: str, orphan: bool = False, what: str = "run") -> None:
        """Raise NotAllowed unless `visitor` may `action` (stop, rename, delete, resume) the run (or sweep)."""
        if not self.can_modify(visitor, run_owner, orphan):
            raise NotAllowed(f"you cannot {action} this {what}: only the visitor who started it or an admin can")

    def setting_problems(self, config: TrainConfig) -> dict[str, str]:
        """Settings over shared mode's limits, {field: message}, for a form to show beside
        each field; empty in local mode. The config is valid (config.validate passed)."""
        if not self.shared:
            return {}
        problems = {}
        if config.batch_size > self.limits.max_batch_size:
            problems["batch_size"] = f"{config.batch_size} is over this server's limit; use at most {self.limits.max_batch_size}"
        width = config.model_kwargs().get("width")
        if width is not None and width > self.limits.max_width:
            problems["width"] = f"{width} is over this server's limit; use at most {self.limits.max_width}"
        return problems

    def check_config(self, config: TrainConfig) -> None:
        """Raise LimitError when a valid config is over a limit: a setting first, then its
        estimated memory (computed on the meta device; nothing is allocated). Local mode
        has no limits, but no run may need more memory than the machine has: the first
        allocation would bring the whole server down."""
        for name, message in self.setting_problems(config).items():
            raise LimitError(message, field=name)
        estimate = estimate_memory(config)
        fix = "lower the batch size or the width, or pick a smaller model"
        if self.shared and estimate.total > self.limits.memory_per_run_gb * GB:
            raise LimitError(f"this run needs {estimate.describe()} of memory and the limit is "
                             f"{self.limits.memory_per_run_gb:g} GB per run: {fix}")
        if self.machine_bytes and estimate.total > self.machine_bytes:
            raise LimitError(f"this run needs {estimate.describe()} of memory and this machine has "
                             f"{self.machine_bytes / GB:.0f} GB in all: {fix}")

    def check_queue(self, visitor: Visitor, visitor_active: int, total_active: int, adding: int = 1) -> None:
        """Raise LimitError when `adding` new runs (1, or a sweep's trials at once) would go
        over the queue limits; `*_active` count runs queued or training now (the visitor's
        own, and everyone's; a running sweep's trials at once included)."""
        if not self.shared:
            return
        lim = self.limits
        if adding == 1 and visitor_active >= lim.runs_per_visitor:
            raise LimitError(
                f"you already have {_runs(visitor_active)} queued or training, the most this server allows per visitor: "
                "wait for one to finish or stop one"
            )
        if adding == 1 and total_active >= lim.queue_length:
            raise LimitError(
                f"the queue is full ({_runs(total_active)} queued or training, the most this server allows): try again later"
            )
        if visitor_active + adding > lim.runs_per_visitor:
            raise LimitError(
                f"this sweep trains {adding} trials at once and you already have {_runs(visitor_active)} queued or training: "
                f"{visitor_active + adding - lim.runs_per_visitor} over this server's {_runs(lim.runs_per_visitor)} per visitor; "
                "lower Trials at once, or wait for a run to finish"
            )
        if total_active + adding > lim.queue_length:
            raise LimitError(
                f"this sweep trains {adding} trials at once and {_runs(total_active)} are queued or training: "
                f"{total_active + adding - lim.queue_length} over this server's queue of {_runs(lim.queue_length)}; "
                "lower Trials at once, or try again later"
            )

    def check_sweep(self, trials: int, at_once: int, visitor_sweeps: int) -> None:
        """Raise LimitError when a sweep is over the sweep limits: `trials` planned in all,
        `at_once` trained at the same time, `visitor_sweeps` the visitor's sweeps running now."""
        if not self.shared:
            return
        lim = self.limits
        if trials > lim.trials_per_sweep:
            raise LimitError(f"this sweep plans {trials} trials: {trials - lim.trials_per_sweep} over this server's "
                             f"{lim.trials_per_sweep} per sweep; vary fewer values or lower Trials")
        if at_once > lim.trials_at_once:
            raise LimitError(f"{at_once} trials at once is {at_once - lim.trials_at_once} over this server's "
                             f"{lim.trials_at_once}; lower Trials at once")
        if visitor_sweeps >= lim.sweeps_per_visitor:
            raise LimitError(f"you already have {_sweeps(visitor_sweeps)} running, the most this server allows per visitor: "
                             "wait for it to end or stop it")

    def describe_limits(self, visitor_active: int) -> str:
        """One line for the form, e.g. 'Shared server: 1 of your 2 runs in use · batch size
        up to 1024 · width up to 128 · 2 GB per run'; empty in local mode."""
        if not self.shared:
            return ""
        lim = self.limits
        return (f"Shared server: {visitor_active} of your {_runs(lim.runs_per_visitor)} in use · batch size up to "
                f"{lim.max_batch_size} · width up to {lim.max_width} · {lim.memory_per_run_gb:g} GB per run")

    def describe_sweep_limits(self, visitor_active: int, visitor_sweeps: int) -> str:
        """One line for the Sweep form; empty in local mode."""
        if not self.shared:
            return ""
        lim = self.limits
        return (f"Shared server: {visitor_sweeps} of your {_sweeps(lim.sweeps_per_visitor)} and {visitor_active} of your "
                f"{_runs(lim.runs_per_visitor)} in use · up to {lim.trials_per_sweep} trials a sweep, {lim.trials_at_once} at once · "
                f"every trial within the Train limits ({lim.memory_per_run_gb:g} GB, batch size up to {lim.max_batch_size}, "
                f"width up to {lim.max_width})")


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _sweeps(n: int) -> str:
    return f"{n} sweep" if n == 1 else f"{n} sweeps"
