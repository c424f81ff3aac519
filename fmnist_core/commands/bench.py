"""`python -m fmnist_core bench`: speed tables, measured side by side in one process.

1. Training throughput of the report's five models: our engine (uint8 data in memory,
   index batches) vs the usual tutorial pipeline (torchvision FashionMNIST + ToTensor +
   DataLoader), same model, batch size, optimizer and thread count.
2. Time to 90/92/93/94% test accuracy for each recipe (mean and spread over seeds).
3. Prediction latency (p50/p99, one image) and batched throughput for shipped models.
4. Where a training step's time goes (data, forward, backward, optimizer), per recipe.
5. Exported models: onnxruntime's single-image latency beside eager PyTorch, the export's
   largest difference from PyTorch on the test set; explanation latency per method.
6. A busy machine: one epoch of `fast` idle and beside a spinning core, automatic threads
   vs 1 vs 2 (bench_busy.py; `bench --busy` runs it alone; not in --quick).
7. Photo preprocessing: one 12 MP JPEG through open_image and find_item, as Predict does
   (bench_photo.py; `bench --photo` runs it alone).
"""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fmnist_core.base.paths import pretrained_dir
from fmnist_core.commands.bench_busy import busy_machine_section
from fmnist_core.commands.bench_photo import photo_preprocessing_section
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.images.data import FILES, find_data_dir, load_fashion_mnist, normalize
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.recipes import REPLACES, recipe_config
from fmnist_core.training.engine import build_model, build_optimizer, build_scheduler, train_one_epoch
from fmnist_core.use.inference import predict_images

REPORT_MODELS = ("mlp4", "mlp_custom", "cnn_a", "cnn_b", "cnn_c")
THRESHOLDS = (90.0, 92.0, 93.0, 94.0)
WARMUP_BATCHES = 20  # untimed, so the first model measured does not pay for the process's warm-up


def _train_config(model: str, batch_size: int, threads: int) -> TrainConfig:
    return TrainConfig(model=model, optimizer="sgd", lr=0.01, momentum=0.9, batch_size=batch_size, epochs=1, threads=threads)


def engine_throughput(model: str, batch_size: int, n_batches: int, threads: int) -> float:
    """Images/s of train_one_epoch itself on the first n_batches*batch_size images."""
    config = _train_config(model, batch_size, threads)
    torch.set_num_threads(threads)
    data = load_fashion_mnist()
    n = n_batches * batch_size
    images, labels = normalize(data.train_images[:n]), data.train_labels[:n]
    net = build_model(config)
    optimizer = build_optimizer(net, config)
    scheduler = build_scheduler(optimizer, config, n_batches)

    def one_pass(x: torch.Tensor, y: torch.Tensor) -> None:
        train_one_epoch(net, optimizer, scheduler, nn.CrossEntropyLoss(), x, y, config,
                        torch.Generator().manual_seed(0), threading.Event(), lambda *a: None)

    one_pass(images[: WARMUP_BATCHES * batch_size], labels[: WARMUP_BATCHES * batch_size])  # allocator, kernels
    start = time.perf_counter()
    one_pass(images, labels)
    return n / (time.perf_counter() - start)


def _torchvision_root() -> Path:
    """torchvision's FashionMNIST wants uncompressed files under <root>/FashionMNIST/raw/."""
    root = Path(tempfile.gettempdir()) / "fmnist-bench-torchvision"
    raw = root / "FashionMNIST" / "raw"
    if not all((raw / stem).is_file() for stem in FILES.values()):
        raw.mkdir(parents=True, exist_ok=True)
        source = find_data_dir()
        for stem in FILES.values():
            gz, plain = source / (stem + ".gz"), source / stem
            with (gzip.open(gz, "rb") if gz.is_file() else open(plain, "rb")) as f, open(raw / stem, "wb") as out:
                shutil.copyfileobj(f, out)
    return root


def tutorial_throughput(model: str, batch_size: int, n_batches: int, threads: int) -> float:
    """Images/s of the tutorial pipeline: Dataset + ToTensor/Normalize + DataLoader."""
    from torchvision import datasets, transforms

    torch.set_num_threads(threads)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    dataset = datasets.FashionMNIST(str(_torchvision_root()), train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    config = _train_config(model, batch_size, threads)
    net = build_model(config)
    optimizer = build_optimizer(net, config)
    criterion = nn.CrossEntropyLoss()
    net.train()
    seen = 0
    for i, (x, y) in enumerate(loader):
        if i == WARMUP_BATCHES:  # the same warm-up as the engine gets
            seen, start = 0, time.perf_counter()
        if i == WARMUP_BATCHES + n_batches:
            break
        loss = criterion(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        seen += len(y)
    return seen / (time.perf_counter() - start)


PHASES = ("data", "forward", "backward", "step", "other")


class PhaseClock:
    """train_one_epoch's `clock`: adds the time since the previous mark to the phase that
    just ended. Eager CPU ops are synchronous, so the clock is honest."""

    def __init__(self):
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.last = 0.0

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        if phase != "start":
            self.totals[phase] += now - self.last
        self.last = now


def step_profile(config: TrainConfig, n_batches: int, warmup: int = 10) -> dict:
    """Milliseconds per batch in each phase of the engine's own training step
    (train_one_epoch with a PhaseClock); "other" is the rest of the loop: loss.item(),
    the divergence check, bookkeeping."""
    torch.set_num_threads(config.resolved_threads())
    data = load_fashion_mnist()
    model = build_model(config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, n_batches + warmup)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(0)

    def run(n: int, clock=None) -> None:
        images = normalize(data.train_images[: n * config.batch_size])
        train_one_epoch(model, optimizer, scheduler, criterion, images, data.train_labels[: len(images)], config,
                        generator, threading.Event(), lambda *a: None, clock=clock)

    run(warmup)  # allocator, kernels
    clock = PhaseClock()
    run(n_batches, clock)
    return {phase: 1000 * seconds / n_batches for phase, seconds in clock.totals.items()}


def default_recipes() -> list[str]:
    """Ours, each after the recipe it replaced, so that the two are timed side by side."""
    return [name for recipe, previous in REPLACES.items() for name in (previous, recipe)]


def speedups(results: list[dict]) -> list[dict]:
    """Mean time to each threshold, a recipe against the one it replaced (measured in the
    same run, so on the same machine and load), over the seeds on which both reached it."""
    by_name = {result["recipe"]: result["seconds_to"] for result in results}
    rows = []
    for recipe, seconds_to in by_name.items():
        previous = REPLACES.get(recipe)
        if previous not in by_name:
            continue
        for t in THRESHOLDS:
            pairs = [(new, old) for new, old in zip(seconds_to[str(t)], by_name[previous][str(t)])
                     if new is not None and old is not None]
            if pairs:
                rows.append({"recipe": recipe, "previous": previous, "threshold": t, "seeds": len(pairs),
                             "ratio": statistics.mean(n for n, _ in pairs) / statistics.mean(o for _, o in pairs)})
    return rows


class _Clock:
    """Engine callback: wall-clock seconds at the end of each epoch, with test accuracy."""

    def __init__(self):
        self.points: list[tuple[float, float]] = []

    def on_epoch_end(self, record: dict) -> None:
        self.points.append((record["elapsed_s"], record["test_accuracy"]))


def time_to_accuracy(recipe: str, seeds: int, threads: int) -> dict:
    """Seconds from the first step to the end of the first epoch whose test accuracy
    reaches each threshold (per-epoch test evaluation counted, for every recipe alike),
    and the final test accuracy (as the model is scored: with its flip TTA, if any)."""
    from fmnist_core.training.engine import fit

    per_threshold: dict[float, list[float | None]] = {t: [] for t in THRESHOLDS}
    finals = []
    for seed in range(seeds):
        clock = _Clock()
        fit(recipe_config(recipe, seed=seed, threads=threads), callbacks=[clock])
        finals.append(clock.points[-1][1])
        for t in THRESHOLDS:
            per_threshold[t].append(next((s for s, acc in clock.points if acc >= t), None))
    return {"recipe": recipe, "final_accuracy": finals, "seconds_to": {str(t): v for t, v in per_threshold.items()}}


def latency(path: Path, calls: int) -> dict:
    loaded = load_checkpoint(path)
    data = load_fashion_mnist()
    images = [img.numpy() for img in data.test_images[:calls]]
    predict_images(loaded.model, images[:5])  # warm-up
    times = []
    for image in images:
        start = time.perf_counter()
        predict_images(loaded.model, [image])
        times.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    from fmnist_core.use.scoring import predict_dataset

    predict_dataset(loaded.model, normalize(data.test_images))
    batched = len(data.test_images) / (time.perf_counter() - start)
    return {"model": path.name, "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "batched_images_per_s": batched}


def _spread(values: list[float | None]) -> str:
    if any(v is None for v in values) or not values:
        reached = sum(v is not None for v in values)
        return f"no ({reached}/{len(values)} seeds)"
    reached_all = [v for v in values if v is not None]  # every one, as checked above
    if len(reached_all) == 1:
        return f"{reached_all[0]:.1f}"
    return f"{statistics.mean(reached_all):.1f} ± {statistics.stdev(reached_all):.1f}"


def run_bench(quick: bool = False, as_json: bool = False, seeds: int = 3, threads: int = 1, recipes: list[str] | None = None) -> int:
    out: dict = {"threads": threads, "quick": quick}
    batch_size = 32  # the report's batch size
    n_batches = 150 if quick else 600
    print(f"1. Training throughput, images/s (batch {batch_size}, SGD, {threads} thread(s), {n_batches} batches, best of {1 if quick else 2})")
    print(f"{'model':<12}{'engine':>10}{'tutorial':>10}{'ratio':>8}")
    rows = []
    repeats = 1 if quick else 2  # best of, alternating: the other core is shared and noisy
    for model in REPORT_MODELS:
        ours = theirs = 0.0
        for _ in range(repeats):
            ours = max(ours, engine_throughput(model, batch_size, n_batches, threads))
            theirs = max(theirs, tutorial_throughput(model, batch_size, n_batches, threads))
        rows.append({"model": model, "engine": ours, "tutorial": theirs, "ratio": ours / theirs})
        print(f"{model:<12}{ours:>10,.0f}{theirs:>10,.0f}{ours / theirs:>7.2f}x", flush=True)
    out["throughput"] = rows

    recipes = recipes or ([REPLACES["fast"], "fast"] if quick else default_recipes())
    seeds = 1 if quick else seeds
    print(f"\n2. Seconds to test accuracy (mean ± std over {seeds} seed(s); wall clock incl. per-epoch test evaluation)")
    print(f"{'recipe':<12}" + "".join(f"{f'{t:.0f}%':>22}" for t in THRESHOLDS) + f"{'final %':>16}")
    out["time_to_accuracy"] = []
    for recipe in recipes:
        result = time_to_accuracy(recipe, seeds, threads)
        out["time_to_accuracy"].append(result)
        cells = "".join(f"{_spread(result['seconds_to'][str(t)]):>22}" for t in THRESHOLDS)
        print(f"{recipe:<12}{cells}{_spread(result['final_accuracy']):>16}", flush=True)
    out["speedups"] = speedups(out["time_to_accuracy"])
    for row in out["speedups"]:
        print(f"{row['recipe']} reaches {row['threshold']:.0f}% in {row['ratio']:.2f}x the time of {row['previous']} "
              f"(the {row['seeds']} seed(s) on which both did)")

    print("\n3. Prediction (eager PyTorch, inference mode, CPU)")
    print(f"{'checkpoint':<20}{'p50 ms':>10}{'p99 ms':>10}{'batched img/s':>16}")
    out["latency"] = []
    shipped = pretrained_dir()
    for folder in sorted(shipped.iterdir()) if shipped.is_dir() else []:
        if (folder / "model.safetensors").is_file():
            row = latency(folder, 100 if quick else 500)
            out["latency"].append(row)
            print(f"{row['model']:<20}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{row['batched_images_per_s']:>16,.0f}", flush=True)

    profiled = [*recipes, "report_cnn_c"]
    print(f"\n4. Where a training step goes, ms per batch ({threads} thread(s))")
    print(f"{'recipe':<14}{'batch':>6}" + "".join(f"{p:>10}" for p in PHASES) + f"{'total':>10}{'img/s':>10}")
    out["step_profile"] = []
    for recipe in profiled:
        config = recipe_config(recipe, threads=threads)
        ms = step_profile(config, 30 if quick else 150)
        total = sum(ms.values())
        out["step_profile"].append({"recipe": recipe, "batch_size": config.batch_size, **ms})
        print(f"{recipe:<14}{config.batch_size:>6}" + "".join(f"{ms[p]:>10.2f}" for p in PHASES)
              + f"{total:>10.2f}{1000 * config.batch_size / total:>10,.0f}", flush=True)
    torch.set_num_threads(threads)
    out["export"], out["explain"] = export_and_explain_section(shipped, 100 if quick else 500, 1000 if quick else 10_000)
    if not quick:
        out["busy_machine"] = busy_machine_section()
    out["photo_preprocessing"] = photo_preprocessing_section()
    if as_json:
        print(json.dumps(out))
    return 0


# ---- 5. export and explain (issue 13) ---------------------------------------------------------


def _p50_ms(call, inputs, cpu: bool = False) -> float:
    """Median ms of call(x) over inputs: wall clock, or with `cpu` this thread's CPU time,
    which other processes on a shared machine do not inflate."""
    clock = time.thread_time if cpu else time.perf_counter
    call(inputs[0])  # warm-up
    times = []
    for x in inputs:
        start = clock()
        call(x)
        times.append((clock() - start) * 1000)
    return float(np.percentile(times, 50))


def export_latency(path: Path, calls: int, check_images: int = 10_000) -> dict:
    """One normalised image at a time: eager PyTorch vs onnxruntime on the exported file,
    and the export's largest difference from PyTorch on the first `check_images` test images."""
    from fmnist_core.use.export import ExportedModel, check_export, export_bytes
    from fmnist_core.use.scoring import class_probabilities

    model = load_checkpoint(path).model
    data = load_fashion_mnist()
    images = normalize(data.test_images[:check_images])
    onnx = export_bytes(model, "onnx")
    check = check_export(model, onnx, "onnx", images, data.test_labels[:check_images])
    session = ExportedModel(onnx, "onnx", threads=torch.get_num_threads())
    singles = [images[i : i + 1] for i in range(calls)]
    return {"model": path.name, "eager_p50_ms": _p50_ms(lambda x: class_probabilities(model, x), singles),
            "onnx_p50_ms": _p50_ms(lambda x: session(x.numpy()), singles), "max_difference": check.max_difference,
            "accuracy_torch": check.torch_accuracy, "accuracy_onnx": check.export_accuracy}


def explain_latency(path: Path, calls: int) -> dict:
    """p50 ms of one explanation (a test image, its top class) per method."""
    from fmnist_core.use.explain import explain, methods_for

    model = load_checkpoint(path).model
    images = [img.numpy() for img in load_fashion_mnist().test_images[:calls]]
    row: dict[str, str | float] = {"model": path.name}
    for method in methods_for(model):
        row[method] = _p50_ms(lambda img, m=method: explain(model, img, None, m), images)
        row[f"{method}_cpu"] = _p50_ms(lambda img, m=method: explain(model, img, None, m), images, cpu=True)
    return row


def export_and_explain_section(shipped: Path, calls: int, check_images: int = 10_000) -> tuple[list, list]:
    folders = [f for f in sorted(shipped.iterdir()) if (f / "model.safetensors").is_file()] if shipped.is_dir() else []
    print(f"\n5. Exported (ONNX) vs eager PyTorch, one image, {torch.get_num_threads()} thread(s); difference on {check_images:,} test images")
    print(f"{'checkpoint':<20}{'eager p50 ms':>14}{'onnxrt p50 ms':>15}{'max |diff|':>12}{'accuracy':>10}")
    exported = []
    for folder in folders:
        row = export_latency(folder, calls, check_images)
        exported.append(row)
        print(f"{row['model']:<20}{row['eager_p50_ms']:>14.3f}{row['onnx_p50_ms']:>15.3f}{row['max_difference']:>12.1e}"
              f"{row['accuracy_onnx']:>9.2f}%", flush=True)
    explained = []
    print(f"\n   Explanation p50 ms, wall / CPU (one test image, its top class, {torch.get_num_threads()} thread(s))")
    print(f"{'checkpoint':<20}" + "".join(f"{m:>18}" for m in ("ig", "occlusion", "gradcam")))
    for folder in folders:
        row = explain_latency(folder, max(10, calls // 10))
        explained.append(row)
        cells = [f"{row[m]:.1f} / {row[m + '_cpu']:.1f}" if m in row else "-" for m in ("ig", "occlusion", "gradcam")]
        print(f"{row['model']:<20}" + "".join(f"{c:>18}" for c in cells), flush=True)
    return exported, explained
