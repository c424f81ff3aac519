"""The training engine: fit() = run start, then per epoch train_one_epoch + evaluate.

Callbacks are plain objects; fit calls whichever of these methods they define:
    on_run_start(event) on_batch_end(event) on_epoch_end(event) on_run_end(event)
    on_checkpoint(model, event)   after each completed epoch, with the weights to keep
    on_resume_point(state)        then, with what resuming after that epoch needs (resume.ResumeState)
Events are dicts of plain numbers and strings (never tensors), safe to hand to another
thread or to json.dumps.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from fmnist_core.base.statuses import RunStatus
from fmnist_core.images.data import FashionMNIST, augment, load_fashion_mnist, normalize, split_train_validation, tiles_per_image, to_patches
from fmnist_core.images.photo_augment import photo_augment
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import count_parameters, create_model
from fmnist_core.modeling.weight_init import init_weights
from fmnist_core.training.finetune import load_start_weights, photos_for_run
from fmnist_core.training.photo_data import PhotoData, synthetic_photo_data
from fmnist_core.training.resume import ResumeState, capture, restore
from fmnist_core.use.scoring import evaluate, predict_dataset, score_probabilities

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel

BATCH_EVENTS_PER_SECOND = 4  # enough for a live chart, negligible cost per batch
# With a photo set (`--photos`), this share of every batch is photos from its training part,
# drawn in a fresh random order each pass: a few hundred photos next to 60,000 images would
# otherwise barely move the weights.
PHOTO_BATCH_SHARE = 0.25


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    model: nn.Module
    status: str  # finished | stopped | diverged
    message: str
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    start: dict = field(default_factory=dict)  # fine-tuning: the starting weights' test (and photo) accuracy
    ran_on: dict = field(default_factory=dict)  # device, threads, precision: what the timing was measured on


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(config: TrainConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The initialised model on `device`, in the memory format the config asks for."""
    torch.manual_seed(config.seed)
    model = init_weights(create_model(config.model, **config.model_kwargs()), config.init).to(device)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def autocast(config: TrainConfig, device: torch.device):
    """Mixed precision for forward and loss when the config asks for bf16, or for auto on
    hardware with native bf16 (weights stay fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.resolved_precision(device.type) == "bf16")


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params, wd, lr = model.parameters(), config.weight_decay, config.lr
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, momentum=config.momentum, weight_decay=wd)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """A per-step schedule over the whole run."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=0.25, cycle_momentum=config.optimizer == "sgd"
        )

    def factor(step: int) -> float:
        t = step / max(1, total)
        if config.schedule == "step":
            return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Emitter:
    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def wants(self, hook: str) -> bool:
        return any(hasattr(callback, hook) for callback in self.callbacks)

    def __call__(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is not None:
                method(*args)


def train_one_epoch(model, optimizer, scheduler, criterion, images, labels, config, generator, stop, on_batch, clock=None,
                    photos: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict | None:
    """One pass over `images` (N, 1, 28, 28) in random order. Returns the epoch's
    training figures, or None when `stop` was set (the partial epoch is dropped).
    `photos` (images (M, 1, 28, 28), labels (M,)): added to every batch, PHOTO_BATCH_SHARE of it.

    `clock`, when given, is called with a phase name as each phase of a step ends
    ("start", "data", "forward", "backward", "step", "other"): bench's step profile
    times this very loop rather than a copy of it."""
    mark = clock or _no_clock
    model.train()
    n, bs = len(images), config.batch_size
    k = tiles_per_image(config.patch)
    perm = torch.randperm(n, generator=generator).to(images.device)
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    seen = batches = 0
    photo_stream = _photo_stream(photos, n, bs, generator)
    for start in range(0, n, bs):
        if stop.is_set():
            return None
        mark("start")
        idx = perm[start : start + bs]
        x, y = images[idx], labels[idx]  # (B, 1, 28, 28), (B,)
        if photo_stream is not None:
            assert photos is not None  # _photo_stream gives batches only with photos
            pick = photo_stream[batches]
            x, y = torch.cat([x, photos[0][pick]]), torch.cat([y, photos[1][pick]])  # (B + P, 1, 28, 28)
        if config.augment:
            x = augment(x, generator)
        if config.photo_augment:
            x = photo_augment(x, generator, config.photo_augment)
        if config.patch:
            x, y = to_patches(x, config.patch), y.repeat_interleave(k)  # (B*k, 1, P, P)
        mark("data")
        with autocast(config, images.device):
            out = model(x)
            loss = criterion(out, y)
        mark("forward")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        optimizer.step()
        scheduler.step()
        mark("step")
        loss_value = loss.item()  # one sync per batch: needed for the divergence guard
        if not math.isfinite(loss_value):
            raise Diverged(f"batch {batches + 1}")
        loss_sum += loss_value
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
        batches += 1
        on_batch(batches, loss_value, len(idx))
        mark("other")
    return {
        "train_loss": loss_sum.item() / max(1, batches),
        "train_loss_sum": loss_sum.item(),  # the report's "Loss": per-batch losses summed
        "train_accuracy": 100.0 * correct.item() / max(1, seen),
        "batches": batches,
    }


def _no_clock(phase: str) -> None:
    pass


def _photo_stream(photos, n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor | None:
    """Which photos go with each batch of an epoch, (batches, P): consecutive random orders
    of all of them, so every photo is seen about equally often."""
    if photos is None:
        return None
    count = len(photos[1])
    per_batch = max(1, round(batch_size * PHOTO_BATCH_SHARE / (1 - PHOTO_BATCH_SHARE)))
    batches = math.ceil(n / batch_size)
    rounds = math.ceil(batches * per_batch / count)
    order = torch.cat([torch.randperm(count, generator=generator) for _ in range(rounds)])
    return order[: batches * per_batch].view(batches, per_batch).to(photos[1].device)


def fit(config: TrainConfig, data: FashionMNIST | None = None, callbacks=(), stop: threading.Event | None = None,
        resume: ResumeState | None = None, cores_kept_free: int = 0, photo_data: PhotoData | None = None) -> FitResult:
    """Train `config` on Fashion-MNIST; see the module docstring for the callbacks.
    `resume`: continue after its epoch, with its weights, optimizer, scheduler, EMA and
    random state, exactly as if the run had never stopped. `cores_kept_free`: cores that
    automatic threads (config.threads 0) leave to others; the app keeps one for itself.
    config.init_from: start from that checkpoint's weights (fine-tuning). config.photos /
    `photo_data` (already loaded, else read from config.photos): mix the set's training part
    into every batch and score its held-out part each epoch (photo_accuracy)."""
    config.validate()
    emit = _Emitter(callbacks)
    stop = stop or threading.Event()
    data = data or load_fashion_mnist()
    device = resolve_device(config.device)
    torch.set_num_threads(config.resolved_threads(cores_kept_free))

    model = build_model(config, device)
    if config.init_from and resume is None:  # a resumed run's own weights replace these anyway
        load_start_weights(model, config)
    # The whole data set goes to the device once (55 MB as float32): on a GPU every batch
    # is then an index into device memory, with no host-to-device copy per step.
    train_x, train_y = normalize(data.train_images).to(device), data.train_labels.to(device)
    test_x, test_y = normalize(data.test_images).to(device), data.test_labels.to(device)
    val_x = val_y = None
    keep = torch.arange(len(train_x))
    if config.validation:
        keep, held = split_train_validation(len(train_x), config.validation, seed=config.seed)
        val_x, val_y = train_x[held.to(device)], train_y[held.to(device)]
        train_x, train_y = train_x[keep.to(device)], train_y[keep.to(device)]
    if photo_data is None and config.synthetic_photos:  # photos of training images only, never of validation ones
        first = keep[: config.synthetic_photos]  # only these are photographed: no copy of the whole training set
        photo_data = synthetic_photo_data(data.train_images[first], data.train_labels[first], config.synthetic_photos)
    photo_data = photo_data or photos_for_run(config)
    photos = photo_x = photo_y = None
    if photo_data is not None:
        photos = (normalize(photo_data.train_images).to(device), photo_data.train_labels.to(device))
        photo_x, photo_y = normalize(photo_data.heldout_images).to(device), photo_data.heldout_labels.to(device)

    steps = math.ceil(len(train_x) / config.batch_size)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    ema = _ema_model(model, config.ema) if config.ema else None
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    if resume is not None:
        restore(resume, model, optimizer, scheduler, ema, generator)
        history = list(resume.history)
    elapsed_before = history[-1]["elapsed_s"] if history and "elapsed_s" in history[-1] else 0.0
    start: dict = {}
    if config.init_from and resume is None:  # where fine-tuning starts, for the trade-off it makes
        start["start_test_accuracy"] = evaluate(model, test_x, test_y)["accuracy"]
        if photo_x is not None and photo_y is not None:
            start["start_photo_accuracy"] = evaluate(model, photo_x, photo_y)["accuracy"]

    ran_on = {"device": str(device), "threads": torch.get_num_threads(), "precision": config.resolved_precision(device.type)}
    emit("on_run_start", {
        "model": config.model, "params": count_parameters(model), "epochs": config.epochs,
        "batches_per_epoch": steps, "train_size": len(train_x), "test_size": len(test_x), **ran_on, **start,
    })
    run_start = time.perf_counter() - elapsed_before
    status, message = RunStatus.FINISHED, ""
    total_steps = config.epochs * steps
    for epoch in range(len(history) + 1, config.epochs + 1):
        epoch_start = time.perf_counter()
        last_emit = [0.0]
        images_seen = [0]

        def on_batch(batch: int, loss_value: float, n_images: int) -> None:
            if ema is not None:
                ema.update_parameters(model)
            images_seen[0] += n_images
            now = time.perf_counter()
            if now - last_emit[0] < 1.0 / BATCH_EVENTS_PER_SECOND and batch < steps:
                return
            last_emit[0] = now
            elapsed = now - run_start
            done = (epoch - 1) * steps + batch
            emit("on_batch_end", {
                "epoch": epoch, "batch": batch, "batches": steps, "loss": loss_value,
                "lr": optimizer.param_groups[0]["lr"], "progress": done / total_steps,
                "images_per_s": images_seen[0] / max(1e-9, now - epoch_start),
                "elapsed_s": elapsed, "eta_s": elapsed / done * (total_steps - done),
            })

        try:
            figures = train_one_epoch(model, optimizer, scheduler, criterion, train_x, train_y, config, generator, stop, on_batch,
                                      photos=photos)
        except Diverged as where:
            status = RunStatus.DIVERGED
            message = (
                f"training loss became NaN/infinite at epoch {epoch}, {where}: the learning rate "
                f"({config.lr:g}) is probably too high for this model and optimizer; try {config.lr / 10:g}. "
                + ("The last good epoch's checkpoint is kept." if history else "No epoch finished, so no checkpoint was saved.")
            )
            break
        if figures is None:
            status, message = RunStatus.STOPPED, f"stopped by request during epoch {epoch}"
            break
        train_seconds = time.perf_counter() - epoch_start
        scored = ema.module if ema is not None else model
        test_probabilities = predict_dataset(scored, test_x)
        test = score_probabilities(test_probabilities, test_y)
        record = {
            "epoch": epoch, **figures,
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "seconds": time.perf_counter() - epoch_start,
            "images_per_s": len(train_x) / train_seconds,
            "lr": optimizer.param_groups[0]["lr"],
            "elapsed_s": time.perf_counter() - run_start,
        }
        if val_x is not None and val_y is not None:
            val = evaluate(scored, val_x, val_y)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        if photo_x is not None and photo_y is not None:
            photo_scores = evaluate(scored, photo_x, photo_y)
            record.update(photo_loss=photo_scores["loss"], photo_accuracy=photo_scores["accuracy"])
        history.append(record)
        emit("on_checkpoint", scored, record)
        emit("on_test_scores", test_probabilities)  # of the weights just saved: Compare's analysis, already computed
        if emit.wants("on_resume_point"):
            emit("on_resume_point", capture(epoch, history, model, optimizer, scheduler, ema, generator))
        emit("on_epoch_end", record)

    seconds = time.perf_counter() - run_start
    final = ema.module if ema is not None else model
    emit("on_run_end", {"status": status, "message": message, "epochs_done": len(history), "seconds": seconds})
    return FitResult(model=final, status=status, message=message, history=history, seconds=seconds, start=start, ran_on=ran_on)


def _ema_model(model: nn.Module, decay: float) -> AveragedModel:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    # Keep what rebuilds the model, so the averaged weights save like any other model.
    ema.module.model_name, ema.module.build_args = model.model_name, model.build_args
    return ema

