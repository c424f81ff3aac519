"""Sweeps on Ray Tune: many runs at once, on this machine or on a Ray cluster.

Ray Tune schedules, runs, stops early and reports the trials; each trial is our engine's
`fit` (through run_manager.train_run, unchanged) inside `sweep_trial`, a function
trainable that writes an ordinary run into the run store the sweep was started with
(its path travels in the trial's parameters, never taken from a worker's working
directory) and reports every epoch with `ray.tune.report`, so ASHA can stop poor trials.

The driver (`run_sweep`) checks everything first (space, base config, data, address),
writes the sweep record (sweep_store), starts Ray (in this process by default, or joins
`--address`), runs the Tuner, and settles every trial's run folder itself: a trial Ray
stopped early, stopped with the sweep, or whose worker died gets a result.json saying
so, with its finished epochs kept. Ctrl-C, SIGTERM or the Sweep page's stop file stop
every trial; `ray.shutdown()` always runs, so no Ray process outlives the sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import this_process
from fmnist_core.base.statuses import RunStatus, SweepStatus
from fmnist_core.formats.memory import GB, SIZE_SETTINGS, estimate_memory, format_bytes
from fmnist_core.formats.run_files import FileProblem
from fmnist_core.images.data import FashionMNIST, find_data_dir, load_fashion_mnist
from fmnist_core.modeling.config import MAX_NAME_LENGTH, MAX_THREADS, SETTINGS, ConfigError, TrainConfig, flag_of
from fmnist_core.modeling.models import list_models, model_info
from fmnist_core.store.access import LOCAL_OWNER, LimitError, Policy
from fmnist_core.store.run_store import STOP_NAME, RunStore, StopRequest, best_test_accuracy, result_from
from fmnist_core.sweeps.sweep_space import Dimension, SpaceError, arg_text, check_against, grid_size, has_samples
from fmnist_core.sweeps.sweep_store import SweepStore, new_sweep_id, this_host, trials_at_once
from fmnist_core.training.remote_runs import ray_auth_env
from fmnist_core.training.resume import RESUME_NAME
from fmnist_core.training.run_manager import train_run

SEARCHES = ("random", "optuna")
EARLY_STOPS = ("none", "asha")
METRIC = "test_accuracy"  # what a sweep maximises: the test accuracy of each epoch
ADDRESS_TIMEOUT_S = 3.0
DEFAULT_SAMPLED_TRIALS = 8


@dataclass
class SweepSpec:
    """Everything a sweep needs, checked by `check()` before anything starts.
    `rows`: full configs to run as a grid (reproduce --parallel) instead of `space`."""

    base: TrainConfig
    space: list[Dimension] = field(default_factory=list)
    trials: int | None = None  # samples of the space (None: 1 for a pure grid, else 8)
    search: str = "random"
    early_stop: str = "none"
    grace_period: int = 1  # epochs every trial runs before ASHA may stop it
    max_concurrent: int | None = None
    cpus_per_trial: int = 1
    name: str = ""
    subset: int | None = None  # train/test on the first N images: quick tries and tests only
    rows: list[TrainConfig] | None = None
    owner: str = LOCAL_OWNER  # access.Visitor.id of who launched it: it owns every trial run

    @property
    def num_samples(self) -> int:
        if self.trials is not None:
            return self.trials
        return DEFAULT_SAMPLED_TRIALS if has_samples(self.space) else 1

    def to_args(self) -> list[str]:
        """The `sweep` command's arguments for this spec (cli.sweep_spec parses them back to an
        equal spec, its owner from OWNER_ENV): every base setting spelled out, so no recipe
        or default is applied twice. A reproduce grid (`rows`) has no command line."""
        if self.rows is not None:
            raise ValueError("a sweep over rows (reproduce --parallel) has no command line")
        args = []
        for name, declared in SETTINGS.items():
            value = getattr(self.base, name)
            if name == "name":  # the sweep's name names its base config too (cli.sweep_spec)
                continue
            if declared.kind == "bool":
                args.append(flag_of(name) if value else "--no-" + flag_of(name)[2:])
            else:
                args.append(f"{flag_of(name)}={arg_text(value)}")
        args += [d.to_arg() for d in self.space]
        if self.trials is not None:
            args.append(f"--trials={self.trials}")
        args += [f"--search={self.search}", f"--early-stop={self.early_stop}", f"--grace-period={self.grace_period}",
                 f"--cpus-per-trial={self.cpus_per_trial}"]
        if self.max_concurrent is not None:
            args.append(f"--max-concurrent={self.max_concurrent}")
        if self.subset is not None:
            args.append(f"--subset={self.subset}")
        if self.name:
            args.append(f"--name={self.name}")  # one argument: a name starting with "-" is not an option
        return args

    def planned_trials(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        return grid_size(self.space) * self.num_samples

    def trials_at_once(self) -> int:
        return trials_at_once(self.planned_trials(), self.max_concurrent)

    def size_configs(self) -> list[TrainConfig]:
        """The trial configs that bound the sweep's memory and sizes: every combination of
        the values its trials can take of the settings the memory estimate reads, a number
        at its largest (memory never shrinks as a batch, a width, momentum or EMA grows)."""
        if self.rows is not None:
            return list(self.rows)
        dims = [d for d in self.space if d.name in SIZE_SETTINGS]
        choices = [(max(d.corners()),) if SETTINGS[d.name].kind in ("int", "float") else d.corners() for d in dims]
        configs = []
        for values in itertools.product(*choices):
            try:
                configs.append(dataclasses.replace(self.base, **{d.name: v for d, v in zip(dims, values)}).validate())
            except ConfigError:  # e.g. the softmax quirk beside a model without it: no trial gets this
                continue
        return configs or [self.base]

    def check_limits(self, policy: Policy) -> None:
        """Every trial within the limits a Train run has (its settings and its memory, from
        `policy`), and the trials at once within this machine's memory; LimitError naming the
        trial's values otherwise. Builds models on the meta device only: nothing is allocated."""
        largest = 0
        for config in self.size_configs():
            try:
                policy.check_config(config)
            except LimitError as e:
                varied = ", ".join(f"{d.name}={getattr(config, d.name)}" for d in self.space if d.name in SIZE_SETTINGS)
                raise LimitError(f"a trial{' with ' + varied if varied else ''}: {e.message}") from None
            largest = max(largest, estimate_memory(config).total)
        at_once = self.trials_at_once()
        if policy.machine_bytes and at_once > 1 and at_once * largest > policy.machine_bytes:
            raise LimitError(f"{at_once} trials at once need up to {format_bytes(at_once * largest)} of memory and this machine has "
                             f"{policy.machine_bytes / GB:.0f} GB in all: lower trials at once to "
                             f"{max(1, policy.machine_bytes // largest)} or less")

    def check(self) -> SweepSpec:
        """Raise a UserError naming the first bad option; nothing has started yet."""
        if self.search not in SEARCHES:
            raise UserError(f"--search: unknown search '{self.search}'; use {' or '.join(SEARCHES)}")
        if self.early_stop not in EARLY_STOPS:
            raise UserError(f"--early-stop: unknown rule '{self.early_stop}'; use {' or '.join(EARLY_STOPS)}")
        if not 1 <= self.cpus_per_trial <= MAX_THREADS:
            raise UserError(f"--cpus-per-trial: {self.cpus_per_trial} is out of range; use 1 to {MAX_THREADS}")
        if self.trials is not None and not 1 <= self.trials <= 10_000:
            raise UserError(f"--trials: {self.trials} is out of range; use 1 to 10000")
        if self.max_concurrent is not None and not 1 <= self.max_concurrent <= 1000:
            raise UserError(f"--max-concurrent: {self.max_concurrent} is out of range; use 1 to 1000")
        if self.subset is not None and self.subset < 1:
            raise UserError(f"--subset: {self.subset} must be at least 1 image")
        if len(self.name) > MAX_NAME_LENGTH:
            raise UserError(f"--name: use at most {MAX_NAME_LENGTH} characters")
        if self.early_stop == "asha" and not 1 <= self.grace_period <= self.base.epochs:
            raise UserError(f"--grace-period: use 1 to the number of epochs ({self.base.epochs})")
        self.base.validate()
        if self.rows is not None:
            for row in self.rows:
                row.validate()
            return self
        if not self.space:
            raise SpaceError("the search space is empty: vary at least one setting, e.g. --grid lr=0.01,0.05 or --sample lr=loguniform:1e-4:0.3")
        check_against(self.space, self.base)
        self._check_width()
        if self.search == "optuna":
            grids = [d.name for d in self.space if d.kind == "grid"]
            if grids:
                raise SpaceError(f"--search optuna chooses values itself and cannot take --grid ({', '.join(grids)}); "
                                 f"give them as --sample {grids[0]}=choice:...")
        elif self.trials is not None and self.trials > 1 and not has_samples(self.space):
            raise SpaceError("--trials repeats the random draws, and this space has no --sample; "
                             "a grid alone runs each combination once (drop --trials)")
        return self


    def _check_width(self) -> None:
        """A width varied on a model that has none would run trials that all ignore it."""
        width = next((d for d in self.space if d.name == "width"), None)
        if width is None:
            return
        model_dim = next((d for d in self.space if d.name == "model"), None)
        without = [m for m in (model_dim.corners() if model_dim else (self.base.model,)) if not model_info(m).takes_width]
        if without:
            flag = "--grid" if width.kind == "grid" else "--sample"
            takers = ", ".join(m for m in list_models() if model_info(m).takes_width)
            raise SpaceError(f"{flag} width: {without[0]} has no width setting, so every trial would ignore it; "
                             f"width varies only {takers}")


# ---- the trial: runs inside a Ray worker process ---------------------------------------------


def trial_run_id(sweep_id: str, trial_id: str) -> str:
    """The run folder of a trial: known to the trial and to the driver without asking."""
    counter = trial_id.rsplit("_", 1)[-1]  # Ray's trial ids end in a counter: 1839e_00003
    return f"{sweep_id}-t{int(counter) + 1:02d}" if counter.isdigit() else f"{sweep_id}-{trial_id}"


def trial_config(context: dict, params: dict) -> TrainConfig:
    """The trial's TrainConfig: the base, then its row (reproduce) or its sampled values."""
    values = dict(context["base"])
    if "row" in params:
        values = dict(context["rows"][params["row"]])
    values.update({k: v for k, v in params.items() if k != "row"})
    values["threads"] = context["cpus_per_trial"]
    if "row" not in params:
        varied = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        values["name"] = f"{context['name']}: {varied}"[:MAX_NAME_LENGTH]
    return TrainConfig.from_dict(values).validate()


def trial_data(context: dict) -> FashionMNIST:
    directory = context.get("data_dir")
    data = load_fashion_mnist(directory if directory and Path(directory).is_dir() else None)
    n = context.get("subset")
    if not n:
        return data
    return FashionMNIST(data.train_images[:n], data.train_labels[:n], data.test_images[:n], data.test_labels[:n], data.source)


class TuneReporter:
    """Engine callback: every finished epoch (already on disk) goes to Ray Tune."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def on_epoch_end(self, record: dict) -> None:
        from ray import tune

        tune.report({"epoch": record["epoch"], METRIC: record["test_accuracy"], "train_loss": record["train_loss"],
                     "train_accuracy": record["train_accuracy"], "run_id": self.run_id})


def create_trial_run(store: RunStore, config: TrainConfig, context: dict, trial_id: str) -> str:
    """The trial's run folder, claimed by this worker: it reads "starting" (not
    "interrupted") while the worker loads the data and builds the model, "running" from its
    first batch, and "interrupted" only if the worker dies first."""
    run_id = trial_run_id(context["sweep"], trial_id)
    store.create(config, name=config.name, run_id=run_id, owner=context["owner"], sweep=context["sweep"], claim=True)
    return run_id


def sweep_trial(params: dict, context: dict) -> None:
    """Ray Tune's function trainable: one ordinary run in the sweep's run store."""
    from ray import tune

    config = trial_config(context, params)
    store = RunStore(context["store"])
    run_id = create_trial_run(store, config, context, tune.get_context().get_trial_id())
    train_trial(store, run_id, config, lambda: trial_data(context), callbacks=[TuneReporter(run_id)])


def train_trial(store: RunStore, run_id: str, config: TrainConfig, data_of, callbacks=()) -> dict:
    """Train a trial's claimed run folder with `data_of()`; returns its result. Its owner may
    stop it on the Train page (RunStore.request_stop): a Cancel while it was starting, with
    no epoch done, ends it as cancelled, as a queued run's Cancel does."""
    stop = StopRequest(store.root / run_id)
    try:
        result = train_run(store, run_id, config, callbacks=callbacks, data=data_of(), stop=stop)
        if result["status"] == RunStatus.STOPPED and not result["epochs_done"] and store.cancel_requested(run_id):
            result = result_from(RunStatus.CANCELLED, "cancelled before it started", [], 0.0, None)
            store.write_result(run_id, result)
            (store.root / run_id / RESUME_NAME).unlink(missing_ok=True)  # nothing to continue
        return result
    except Exception as e:
        # A diverged run is not an exception (train_run records it); this is a real failure:
        # keep the finished epochs, say what happened, and let Ray mark the trial errored.
        history = store.read(run_id).history
        store.write_result(run_id, result_from(RunStatus.FAILED, f"{type(e).__name__}: {e}", history, _seconds(history), None))
        raise
    finally:
        (store.root / run_id / STOP_NAME).unlink(missing_ok=True)


def _seconds(history: list[dict]) -> float:
    return float(history[-1].get("elapsed_s", 0.0)) if history else 0.0


# ---- the driver ------------------------------------------------------------------------------


def check_address(address: str) -> str:
    """HOST:PORT of a Ray cluster's head, reachable within a few seconds, else UserError
    (Ray's own connect retries for a minute or more before it gives up)."""
    address = address.strip()
    if address.startswith("ray://"):
        raise UserError(f"--address {address}: Ray Client (ray://) is not supported; give the head's HOST:PORT (the GCS port, 6379 by default)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: give the head node as HOST:PORT, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as e:
        raise UserError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); "
                        "start one with `ray start --head --port PORT` or check the address") from None
    return address


PARENT_ENV = "FMNIST_SWEEP_PARENT_PID"  # set by the app: a sweep it started ends when the app does
OWNER_ENV = "FMNIST_SWEEP_OWNER"  # set by the app: the visitor who launched it (the command line's sweeps are "local")


class _StopFlag:
    """Set by Ctrl-C, SIGTERM, the Sweep page's stop file, or the death of the app that
    launched this driver (FMNIST_SWEEP_PARENT_PID; then this process is reparented);
    polled by Tune's Stopper."""

    event = threading.Event()
    stop_file: Path | None = None

    @classmethod
    def is_set(cls) -> bool:
        if not cls.event.is_set() and cls.stop_file is not None and cls.stop_file.exists():
            cls.event.set()
        if not cls.event.is_set() and cls.parent_gone():
            cls.event.set()
        return cls.event.is_set()

    @staticmethod
    def parent_gone() -> bool:
        parent = os.environ.get(PARENT_ENV, "")
        return parent.isdigit() and os.getppid() != int(parent)

    @classmethod
    def reason(cls) -> str:
        """Why the sweep stopped, for its record: asked to, its app went away, or a signal."""
        if cls.stop_file is not None and cls.stop_file.exists():
            return "stopped by request; finished epochs are kept"
        if cls.parent_gone():
            return "the Studio server that launched it stopped; finished epochs are kept"
        return "stopped by Ctrl-C or SIGTERM; finished epochs are kept"


def _stopper():
    from ray.tune import Stopper

    class StopWhenAsked(Stopper):
        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return _StopFlag.is_set()

    return StopWhenAsked()


def _bookkeeper(sweeps: SweepStore, sweep_id: str, planned: int, echo):
    """A Tune callback on the driver: lists each trial's run in the sweep record as it
    starts, prints one line per epoch, and settles runs that ended without a result."""
    from ray.tune import Callback

    class Bookkeeper(Callback):
        def __init__(self):
            self.started: list[str] = []

        def on_trial_start(self, iteration, trials, trial, **info):
            run_id = trial_run_id(sweep_id, trial.trial_id)
            if run_id not in self.started:
                self.started.append(run_id)
                sweeps.update(sweep_id, trial_runs=list(self.started))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            varied = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.config.items())
            echo(f"trial {trial_run_id(sweep_id, trial.trial_id)[-3:]} ({varied}): epoch {result.get('epoch')}, "
                 f"test {result.get(METRIC, float('nan')):.2f}%")

        def on_trial_complete(self, iteration, trials, trial, **info):
            settle_run(sweeps.runs, trial_run_id(sweep_id, trial.trial_id), error=None)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = None
            try:
                error = trial.get_pickled_error() or trial.get_error()
            except Exception:  # noqa: BLE001 - a missing error file must not hide the trial's state
                pass
            settle_run(sweeps.runs, trial_run_id(sweep_id, trial.trial_id), error=error or "the trial failed")

    return Bookkeeper()


def settle_run(store: RunStore, run_id: str, error) -> None:
    """Give a trial's run folder a result when the trial itself could not write one:
    stopped (by ASHA, or with the sweep) or failed (its worker died); finished epochs stay."""
    path = store.root / run_id
    if not path.is_dir() or (path / "result.json").exists():
        return
    record = store.read(run_id)
    history = record.history
    if error is None and len(history) >= int(record.config.get("epochs") or 0) > 0:
        # Every epoch is on disk: the trial was ended between its last report and its own result.
        store.write_result(run_id, result_from(RunStatus.FINISHED, "", history, _seconds(history), None))
        return
    if error is not None:
        text = str(error).strip().splitlines()
        why = text[-1] if text else "unknown error"
        status, message = RunStatus.FAILED, f"the trial's worker stopped: {why}"[:500]
    elif _StopFlag.is_set():
        status, message = RunStatus.STOPPED, f"stopped with the sweep after {len(history)} epoch(s)"
    else:
        status, message = RunStatus.STOPPED, (f"stopped early by ASHA after {len(history)} epoch(s): "
                                      "its test accuracy was behind the other trials' at that point")
    store.write_result(run_id, result_from(status, message, history, _seconds(history), None))


def best_trial(runs) -> dict | None:
    """The trial run with the highest test accuracy at any epoch."""
    scored = [(accuracy, r) for r in runs if r.history and (accuracy := best_test_accuracy(r.history)) is not None]
    if not scored:
        return None
    accuracy, run = max(scored, key=lambda pair: pair[0])
    return {"run": run.id, "name": run.name, "test_accuracy": accuracy, "config": run.config}


def _ray_session_dir() -> str | None:
    """Ray's session folder (its processes carry it on their command lines): lets a test,
    or a person, check that none of this sweep's Ray processes is left behind."""
    try:
        import ray

        return ray._private.worker._global_node.get_session_dir_path()  # type: ignore[attr-defined]  # None only before ray.init; caught below
    except Exception:  # noqa: BLE001 - only informative
        return None


def _install_signal_handlers() -> dict:
    """First Ctrl-C / SIGTERM: stop every trial and settle. A second Ctrl-C: the default."""
    previous: dict = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, _ask_stop)
    return previous


def _ask_stop(signum, frame):
    print("\nstopping every trial (finished epochs are kept); Ctrl-C again to abort", file=sys.stderr)
    _StopFlag.event.set()
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_sweep(spec: SweepSpec, store: RunStore | None = None, address: str | None = None, sweep_id: str | None = None,
              echo=print) -> dict:
    """Run a checked sweep to the end (or until stopped); returns the summary that
    `sweep --json` prints: sweep id, trials, best trial's config and test accuracy, seconds."""
    store = store or RunStore()
    sweeps = SweepStore(store)
    # An id given by the caller (the Sweep page picks it, to list the sweep at once): the record
    # is written before anything can fail, so a sweep that fails to start stays listed as failed
    # with its reason. Without one (the command line) a refusal leaves nothing behind.
    listed_early = sweep_id is not None
    sweep_id = sweep_id or new_sweep_id()
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if sweeps.path(sweep_id).exists():
        raise UserError(f"a sweep with id {sweep_id} exists already; pick another --id")
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Our Ctrl-C / SIGTERM handler before the first record: from the moment the page can
    # see the sweep (and its Stop sends SIGTERM), a stop ends it as stopped, never killed
    # half-way ("interrupted") or by Ray's own handler ("failed: SystemExit").
    _StopFlag.event.clear()
    _StopFlag.stop_file = sweeps.stop_path(sweep_id)
    previous_handlers = _install_signal_handlers()
    try:
        if listed_early:
            sweeps.root.mkdir(parents=True, exist_ok=True)
            sweeps.write(sweep_id, _sweep_record(spec, sweep_id, SweepStatus.STARTING, address, created))
        spec.check()
        if address and address != "auto":
            address = check_address(address)
        data_dir = find_data_dir()  # fail before anything starts when the data is missing
        spec.check_limits(Policy())  # this machine's memory, as for `train`; the app checks its own limits before it launches
        started = time.perf_counter()
        stopped_early = _StopFlag.is_set()  # asked to stop before Ray started: start nothing
        ray_start_s = None if stopped_early else _start_ray(address)  # before the running record: a refusal changes nothing else
    except BaseException as e:
        _restore(previous_handlers)
        if listed_early:
            record_failed_start(sweeps, sweep_id, e)
        raise
    if stopped_early:
        _restore(previous_handlers)
        if listed_early:
            sweeps.update(sweep_id, status=SweepStatus.STOPPED, message="stopped before it started", seconds=0.0)
        sweeps.stop_path(sweep_id).unlink(missing_ok=True)
        return {"sweep": sweep_id, "status": SweepStatus.STOPPED, "trials": 0, "statuses": {}, "best": None, "seconds": 0.0, "ray_start_s": None}
    record = {**_sweep_record(spec, sweep_id, SweepStatus.RUNNING, address, created), "ray_start_s": ray_start_s, "ray_session": _ray_session_dir()}
    name = record["name"]
    status, message = SweepStatus.FAILED, ""
    try:
        import ray

        sweeps.root.mkdir(parents=True, exist_ok=True)
        sweeps.write(sweep_id, record)
        echo(f"{sweep_id}: {spec.planned_trials()} trial(s) on Ray ({address or 'local'}, "
             f"{ray.cluster_resources().get('CPU', 0):g} CPUs; started in {ray_start_s:.1f} s)")
        if not _StopFlag.is_set():  # a stop that came while Ray started: no trial is started
            _tuner(spec, store, sweeps, sweep_id, name, str(data_dir), echo).fit()
        status = SweepStatus.STOPPED if _StopFlag.is_set() else SweepStatus.FINISHED
        message = _StopFlag.reason() if status is SweepStatus.STOPPED else ""
    except BaseException as e:
        status, message = ((SweepStatus.STOPPED, "interrupted") if isinstance(e, KeyboardInterrupt)
                           else (SweepStatus.FAILED, f"{type(e).__name__}: {e}"))
        raise
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            runs, best, status = _settle_sweep(sweeps, sweep_id, status, message, time.perf_counter() - started)
            _restore(previous_handlers)
    seconds = sweeps.raw(sweep_id)["seconds"]
    varied = [d.name for d in spec.space] if spec.rows is None else []
    return {
        "sweep": sweep_id, "status": status, "trials": len(runs),
        "statuses": {s: sum(r.status == s for r in runs) for s in sorted({r.status for r in runs})},
        "best": None if best is None else {"run": best["run"], "test_accuracy": best["test_accuracy"],
                                           "config": {k: best["config"].get(k) for k in varied} if varied else best["config"]},
        "seconds": seconds, "ray_start_s": ray_start_s,
    }


def _sweep_record(spec: SweepSpec, sweep_id: str, status: str, address: str | None, created: str) -> dict:
    """The sweep's record as its driver first writes it (sweep_store.SWEEP_RECORD)."""
    return {
        "id": sweep_id, "name": spec.name or sweep_id, "owner": spec.owner, "status": status, "created": created,
        **this_process(), "host": this_host(), "ray_start_s": None, "ray_session": None,
        "space": [d.to_dict() for d in spec.space],
        "base": spec.base.to_dict(),
        "options": {"trials": spec.planned_trials(), "samples": spec.num_samples, "search": spec.search, "early_stop": spec.early_stop,
                    "grace_period": spec.grace_period, "max_concurrent": spec.max_concurrent, "cpus_per_trial": spec.cpus_per_trial,
                    "address": address or "local", "subset": spec.subset, "rows": len(spec.rows) if spec.rows is not None else None},
        "trial_runs": [],
    }


def start_failure(error: BaseException) -> str:
    """One line saying why a sweep did not start (a UserError is already one line for a person)."""
    if isinstance(error, KeyboardInterrupt):
        return "stopped before it started"
    text = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def record_failed_start(sweeps: SweepStore, sweep_id: str, error: BaseException, name: str = "", owner: str | None = None) -> None:
    """The sweep's record says it failed to start, and why, in one line (written from scratch
    when the driver failed before its first record, e.g. on its command line)."""
    status = SweepStatus.STOPPED if isinstance(error, KeyboardInterrupt) else SweepStatus.FAILED
    try:
        values = sweeps.raw(sweep_id)
    except (FileProblem, OSError, ValueError):
        values = {"id": sweep_id, "name": name or sweep_id, "owner": owner or LOCAL_OWNER, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "space": [], "trial_runs": []}
    if not isinstance(values, dict):
        values = {"id": sweep_id, "space": []}
    sweeps.root.mkdir(parents=True, exist_ok=True)
    sweeps.write(sweep_id, {**values, "status": status, "message": start_failure(error), "seconds": None})


def _start_ray(address: str | None) -> float:
    """Start a local Ray in this process, or join the cluster at `address`; returns the seconds it took."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours stops the trials and settles their runs
    import ray

    started = time.perf_counter()
    if not address:
        with _keep_our_sigterm():
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        return time.perf_counter() - started
    ray_auth_env()  # a local Ray (above) sets up its own token
    try:
        with _quiet_stderr(), _keep_our_sigterm():
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:  # noqa: BLE001 - Ray raises several types here; each means "could not join"
        from ray.exceptions import AuthenticationError

        if ray.is_initialized():
            ray.shutdown()
        chain: list[BaseException | None] = [e]
        seen = set()
        while chain[-1] is not None and id(chain[-1]) not in seen:  # Ray wraps the cause in ConnectionErrors
            seen.add(id(chain[-1]))
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        if any(isinstance(x, AuthenticationError) or "InvalidAuthToken" in str(x) for x in chain if x is not None):
            raise UserError(f"--address {address}: the cluster refused this driver's token; set RAY_AUTH_TOKEN to the head's token "
                            "(`ray get-auth-token` on the head prints it) or copy its ~/.ray/auth_token here") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--address {address}: could not join the Ray cluster there ({first[:200]})") from None
    return time.perf_counter() - started


@contextlib.contextmanager
def _keep_our_sigterm():
    """Ours, installed before the sweep's first record, stays the SIGTERM handler while Ray
    starts and after: ray.init first sets one that exits at once (SystemExit in the middle of
    its start: "failed: SystemExit"), then Ray's core installs a C++ crash handler that kills
    the process on SIGTERM after ours has run ("interrupted"). Neither is installed here; the
    crash handler is also off in the Ray processes this start spawns (it only prints stacks)."""
    import ray._private.utils as ray_utils

    ray_set = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    before = os.environ.get(NO_CRASH_HANDLER)
    os.environ[NO_CRASH_HANDLER] = "1"
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = ray_set
        if before is None:
            os.environ.pop(NO_CRASH_HANDLER, None)
        else:
            os.environ[NO_CRASH_HANDLER] = before
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _ask_stop:
            # again: a handler set below Python (sigaction) while Ray started is not seen by getsignal
            signal.signal(signal.SIGTERM, _ask_stop)


NO_CRASH_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ core logs every failed connect attempt straight to file descriptor 2;
    while joining, send those lines nowhere: a failure gets our one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _settle_sweep(sweeps: SweepStore, sweep_id: str, status: SweepStatus, message: str, seconds: float):
    """After Ray is down: every trial run gets a result, the record its end state (failed
    when every trial failed: nothing was learnt). Returns (runs, best, status)."""
    for run_id in sweeps.raw(sweep_id).get("trial_runs", []):
        settle_run(sweeps.runs, run_id, error=None)
    runs = sweeps.trials(sweeps.read(sweep_id))
    if status == SweepStatus.FINISHED and runs and all(r.status == RunStatus.FAILED for r in runs):
        why = (runs[0].result or {}).get("message") or "unknown error"
        status, message = SweepStatus.FAILED, f"every trial failed; the first: {why}"[:500]
    best = best_trial(runs)
    sweeps.update(sweep_id, status=status, message=message, seconds=seconds, best_run=best and best["run"],
                  trial_runs=[r.id for r in runs])
    sweeps.stop_path(sweep_id).unlink(missing_ok=True)
    return runs, best, status


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _tuner(spec: SweepSpec, store: RunStore, sweeps: SweepStore, sweep_id: str, name: str, data_dir: str, echo):
    from ray import tune

    from fmnist_core.sweeps.sweep_space import to_tune

    context = {
        "store": str(store.root.resolve()), "sweep": sweep_id, "name": name, "owner": spec.owner, "base": spec.base.to_dict(),
        "cpus_per_trial": spec.cpus_per_trial, "subset": spec.subset, "data_dir": data_dir,
        "rows": [row.to_dict() for row in spec.rows] if spec.rows is not None else None,
    }
    if spec.rows is not None:
        param_space = {"row": tune.grid_search(list(range(len(spec.rows))))}
    else:
        param_space = to_tune(spec.space)
    scheduler = None
    if spec.early_stop == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # stop_last_trials=False: a trial that reaches its last epoch returns by itself and
        # writes its own result, instead of being killed right after its final report.
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=spec.base.epochs, grace_period=spec.grace_period,
                                  reduction_factor=2, stop_last_trials=False)
    search_alg = None
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=spec.base.seed)
    trainable = tune.with_resources(tune.with_parameters(sweep_trial, context=context), {"cpu": spec.cpus_per_trial})
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=1 if spec.rows is not None else spec.num_samples,
                                    scheduler=scheduler, search_alg=search_alg,
                                    max_concurrent_trials=spec.max_concurrent,
                                    # a finished trial's worker (torch imported, data in memory) takes the next trial
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=sweep_id, storage_path=str(sweeps.storage_path(sweep_id).resolve()), stop=_stopper(), verbose=0,
            callbacks=[_bookkeeper(sweeps, sweep_id, spec.planned_trials(), echo)],
            failure_config=tune.FailureConfig(max_failures=0),  # a failed trial is reported, not rerun into the same folder
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
