"""`python -m fmnist_core ...`: everything the app does, headless.

Every user error ends with exit status 2 and one line on stderr that says what is wrong
and how to fix it; nothing is written before the input has been checked.

Importing torch takes 2-6 s here, so nothing at the top of this module imports it: each
command imports what it uses, and the parser builds only the parsed command's flags (the
train flags come from config.py, which needs the model registry and so torch).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from fmnist_core.base.errors import UserError
from fmnist_core.base.statuses import RunStatus


def _config_from_args(args):
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.modeling.recipes import recipe_config

    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = recipe_config(args.recipe, **given) if args.recipe else TrainConfig(**given)
    return config.validate()


def cmd_train(args) -> int:
    from fmnist_core.commands.console import ConsoleProgress
    from fmnist_core.images.data import load_fashion_mnist
    from fmnist_core.modeling.config import SETTINGS, SOURCE_FIELDS, TrainConfig, flag_of
    from fmnist_core.store.access import Policy
    from fmnist_core.store.run_store import RunStore, result_from
    from fmnist_core.training.finetune import finetune_config, prepare_sources
    from fmnist_core.training.run_manager import check_resume, disk_full, disk_full_message, rewind_to_resume_point, train_run

    resume = photo_data = None
    if args.resume:
        given_flags = [SOURCE_FIELDS.get(k, flag_of(k)) for k, v in vars(args).items()
                       if v is not None and (k in SETTINGS or k in SOURCE_FIELDS or k in ("recipe", "out"))]
        if given_flags:
            raise UserError(f"--resume continues a run with its own settings; drop {', '.join(given_flags)}")
        load_fashion_mnist()
        folder = Path(args.resume).absolute()
        store, run_id = RunStore(folder.parent), folder.name
        config, resume = check_resume(store, run_id)
        Policy().check_config(config)  # as the app: a run bigger than this machine would be killed mid-epoch
        rewind_to_resume_point(store, run_id, resume)
    else:
        if args.init_from and args.recipe:
            raise UserError("--from continues with the checkpoint's own settings; drop --recipe")
        if args.init_from:
            given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
            config = finetune_config(args.init_from, given)
        else:
            config = _config_from_args(args)
        Policy().check_config(config)  # as the app: a run bigger than this machine would be killed mid-epoch
        config, photo_data = prepare_sources(config)  # the checkpoint and photos checked before anything is written
        load_fashion_mnist()  # fail before creating anything if the data is missing
        out = Path(args.out) if args.out else None
        store = RunStore(out.parent) if out is not None else RunStore()
        try:
            run_id = store.create(config, run_id=out.name if out is not None else None).name
        except UserError as e:
            raise UserError(f"--out: {e}" if out is not None else str(e)) from e
    try:
        result = train_run(store, run_id, config, callbacks=[ConsoleProgress(quiet=args.json)], resume=resume, photo_data=photo_data)
    except Exception as e:
        if not disk_full(e):
            raise
        message = disk_full_message(store, run_id)
        try:  # the run ends as failed, not interrupted, if there is room for its result
            store.write_result(run_id, result_from(RunStatus.FAILED, message, store.settled_history(run_id), 0.0, None))
        except OSError:
            pass
        raise UserError(f"{message} (run folder {store.root / run_id})") from e
    checkpoint = store.root / run_id
    if result["status"] != RunStatus.FINISHED:
        print(f"{result['status']}: {result['message']}", file=sys.stderr)
    summary_row = {"model": config.model, **result, "epochs": result["epochs_done"], "checkpoint": str(checkpoint)}
    if args.json:
        print(json.dumps(summary_row))
    else:
        if trade_off := _fine_tuning_line(result):
            print(trade_off)
        print(f"saved to {checkpoint}")
    return 0 if result["status"] in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


def _fine_tuning_line(result: dict) -> str:
    """'test accuracy 91.20% -> 90.95%; held-out photos 41.7% -> 80.0%' after a fine-tuning run."""
    parts = []
    for label, before, after in (("test accuracy", "start_test_accuracy", "test_accuracy"),
                                 ("held-out photos", "start_photo_accuracy", "photo_accuracy")):
        if result.get(after) is not None:
            start = f"{result[before]:.2f}% -> " if result.get(before) is not None else ""
            parts.append(f"{label} {start}{result[after]:.2f}%")
    return "; ".join(parts) if "start_test_accuracy" in result or "photo_accuracy" in result else ""


def cmd_evaluate(args) -> int:
    from fmnist_core.formats.checkpoint import load_checkpoint
    from fmnist_core.images.data import CLASSES, load_fashion_mnist, normalize
    from fmnist_core.modeling.models import count_parameters
    from fmnist_core.use.scoring import evaluate

    photoset = _photoset_store().get(args.photos) if args.photos else None  # a bad name fails before anything is scored
    loaded = load_checkpoint(args.checkpoint)
    data = load_fashion_mnist()
    metrics = evaluate(loaded.model, normalize(data.test_images), data.test_labels)
    train_metrics = loaded.metadata["metrics"]
    row = {
        "model": loaded.name, "params": count_parameters(loaded.model), "epochs": train_metrics.get("epoch"),
        "train_accuracy": train_metrics.get("train_accuracy"), "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"], "train_loss_sum": train_metrics.get("train_loss_sum"),
        "seconds": train_metrics.get("elapsed_s"), "checkpoint": str(loaded.path),
    }
    score = None
    if photoset is not None:
        from fmnist_core.store.photosets import evaluate_on_photoset

        score = evaluate_on_photoset(loaded.model, photoset)
        row["photoset"] = {"name": photoset.name, "sha256": photoset.sha256, **score.to_dict()}
    if args.json:
        print(json.dumps(row))
        return 0
    print(f"{loaded.name} ({row['params']:,} params): test accuracy {metrics['accuracy']:.2f}%, test loss {metrics['loss']:.4f}")
    if photoset is not None and score is not None:
        heldout = f"; held-out part {score.heldout_accuracy:.2f}%" if score.heldout_accuracy is not None else ""
        print(f"photo set {photoset.name} ({score.count} photos): accuracy {score.accuracy:.2f}% "
              f"(test set {metrics['accuracy']:.2f}%){heldout}")
        for name, value, (train, held) in zip(CLASSES, score.per_class, photoset.counts()):
            if train + held:
                print(f"  {name:<12} {value:6.1f}%  of {train + held} photo(s)")
    return 0


# ---- photo sets: a user's own labelled photos (fmnist_core.store.photosets) ---------------------------


def _photoset_store():
    from fmnist_core.store.photosets import PhotoSetStore

    return PhotoSetStore()


def cmd_photos_add(args) -> int:
    source = Path(args.source)
    photoset = _photoset_store().add_folder(args.name, source, public=args.public)
    print(f"added photo set {photoset.name}: {photoset.describe()}, sha256 {photoset.sha256[:12]}")
    return 0


def cmd_photos_list(args) -> int:
    sets = _photoset_store().list()
    rows = [{"name": s.name, "photos": len(s.items), "owner": s.owner, "public": s.public, "sha256": s.sha256, "problems": s.problems}
            for s in sets]
    if args.json:
        print(json.dumps(rows))
        return 0
    for s in sets:
        if s.problems:
            print(f"warning: photo set {s.name}: {s.problems[0]}", file=sys.stderr)
    good = [s for s in sets if not s.problems]
    if not good:
        print("no photo sets yet: add one with `python -m fmnist_core photos add NAME FOLDER_OR_ZIP`")
        return 0
    print(f"{'name':<24} {'photos':>6}  {'sha256':<12}  {'visibility':<10}  owner")
    for s in good:
        print(f"{s.name:<24} {len(s.items):>6}  {s.sha256[:12]}  {'public' if s.public else 'private':<10}  {s.owner}")
    return 0


def cmd_photos_show(args) -> int:
    from fmnist_core.images.data import CLASSES

    photoset = _photoset_store().get(args.name)
    counts = photoset.counts()
    if args.json:
        print(json.dumps({"name": photoset.name, "sha256": photoset.sha256, "owner": photoset.owner, "public": photoset.public,
                          "created": photoset.created, "counts": {c: {"train": t, "heldout": h} for c, (t, h) in zip(CLASSES, counts)}}))
        return 0
    print(f"photo set {photoset.name}: {photoset.describe()}")
    print(f"sha256 {photoset.sha256}, added {photoset.created} by {photoset.owner}, {'public' if photoset.public else 'private'}")
    print("split: fixed per set, drawn from its hash (30% of each class held out from fine-tuning)")
    print(f"{'class':<12} {'train':>5} {'held out':>8}")
    for name, (train, held) in zip(CLASSES, counts):
        print(f"{name:<12} {train:>5} {held:>8}")
    return 0


def cmd_photos_delete(args) -> int:
    _photoset_store().delete(args.name)
    print(f"deleted photo set {args.name}")
    return 0


def add_photoset_commands(photos) -> None:
    """add, list, show and delete under `photos` (`photos synth`, the generator, sits beside them)."""
    from fmnist_core.store.photosets import FOLDER_HINT

    p = photos.add_parser("add", help="add a photo set from a folder or a .zip laid out one subfolder per class",
                          description=f"Each photo goes in a folder for its class: {FOLDER_HINT}. The photos are checked "
                                      "(readable, no duplicates, within the limits) before anything is kept.")
    p.add_argument("name", help="the set's name: letters, digits, spaces, '.', '_' and '-'")
    p.add_argument("source", help="a folder or a .zip file")
    p.add_argument("--public", action="store_true", help="shared mode: let every visitor see it (default: private)")
    p.set_defaults(func=cmd_photos_add)
    p = photos.add_parser("list", help="the photo sets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_photos_list)
    p = photos.add_parser("show", help="a photo set's classes, split and hash")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_photos_show)
    p = photos.add_parser("delete", help="remove a photo set for good")
    p.add_argument("name")
    p.set_defaults(func=cmd_photos_delete)


def cmd_predict(args) -> int:
    from fmnist_core.formats.checkpoint import load_checkpoint
    from fmnist_core.use.inference import ImageError, open_image, predict_images, read_image_file, to_model_input

    loaded = load_checkpoint(args.checkpoint)
    inputs, names, errors = [], [], []
    for path in args.images:  # one bad file is reported, and the others still classified
        try:
            inputs.append(to_model_input(open_image(read_image_file(path))))
            names.append(path)
        except ImageError as e:
            errors.append({"image": path, "error": str(e)})
            print(f"error: {path}: {e}", file=sys.stderr)
    predictions = predict_images(loaded.model, inputs)
    rows: list[dict[str, Any]] = [{"image": str(p), "label": pr.label, "probability": pr.probability, "top": [[c, v] for c, v in pr.top]}
            for p, pr in zip(names, predictions)]
    if args.json:
        print(json.dumps({"predictions": rows, "errors": errors}))
    else:
        for row in rows:
            tops = ", ".join(f"{c} {v:.1%}" for c, v in row["top"])
            print(f"{row['image']}: {tops}")
    return 2 if errors else 0


def cmd_models(args) -> int:
    from fmnist_core.modeling.model_listing import model_listing

    print(f"{'name':<12} {'params':>10}  description")
    for row in model_listing():
        print(f"{row['name']:<12} {row['params']:>10,}  {row['description']}")
    return 0


def cmd_summary(args) -> int:
    from fmnist_core.modeling.model_listing import model_summary

    print(model_summary(args.name))
    return 0


def cmd_data(args) -> int:
    from fmnist_core.images.data import ensure_data, load_fashion_mnist

    directory = ensure_data()
    data = load_fashion_mnist(directory)
    print(f"Fashion-MNIST: {len(data.train_labels):,} training and {len(data.test_labels):,} test images in {directory}")
    return 0


def cmd_reproduce(args) -> int:
    from fmnist_core.commands.reproduce import run_reproduce

    if args.parallel is not None and not 1 <= args.parallel <= 64:
        raise UserError(f"--parallel: {args.parallel} is out of range; use 1 to 64 rows at a time")
    return run_reproduce(epochs=args.epochs, only=args.only, study=args.study, out_dir=Path(args.results), tables_only=args.tables_only,
                         parallel=args.parallel)


def cmd_bench(args) -> int:
    if args.photo:
        from fmnist_core.commands.bench_photo import photo_preprocessing_section

        row = photo_preprocessing_section()
        if args.json:
            print(json.dumps(row))
        return 0
    if args.busy:
        from fmnist_core.commands.bench_busy import busy_machine_section

        summary_row = busy_machine_section(repeats=args.repeats)
        if args.json:
            print(json.dumps(summary_row))
        return 0
    from fmnist_core.commands.bench import run_bench

    return run_bench(quick=args.quick, as_json=args.json, seeds=args.seeds, threads=args.threads, recipes=args.recipes)


# ---- explain and export (issue 13) ----------------------------------------------------------


def _model_inputs(paths: list[str]) -> list:
    """Each image file as the uint8 (28, 28) input the model sees; a bad file names itself."""
    from fmnist_core.use.inference import ImageError, open_image, read_image_file, to_model_input

    inputs = []
    for path in paths:
        try:  # read_image_file: bounded, refuses a folder or a FIFO (as predict does)
            inputs.append(to_model_input(open_image(read_image_file(path))))
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
    return inputs


def cmd_explain(args) -> int:
    from PIL import Image

    from fmnist_core.base.paths import exports_dir
    from fmnist_core.formats.checkpoint import load_checkpoint
    from fmnist_core.images.data import CLASSES
    from fmnist_core.use.explain import ExplainError, check_method, class_index, explain, overlay
    from fmnist_core.use.export import ensure_writable

    loaded = load_checkpoint(args.checkpoint)
    check_method(loaded.model, args.method)
    target = class_index(args.target) if args.target is not None else None
    inputs = _model_inputs(args.images)  # every input checked before anything is written
    out = Path(args.out) if args.out else exports_dir() / "explanations"
    try:
        ensure_writable(out / "probe.png")
    except UserError as e:
        raise ExplainError(str(e)) from None
    for path, image in zip(args.images, inputs):
        result = explain(loaded.model, image, target, args.method)
        picture = out / f"{Path(path).stem}.{args.method}.{result.target_name.replace('/', '-').replace(' ', '_')}.png"
        Image.fromarray(overlay(image, result.heatmap, scale=10)).save(picture)
        order = result.probabilities.argsort()[::-1][:3]
        tops = ", ".join(f"{CLASSES[i]} {result.probabilities[i]:.1%}" for i in order)
        print(f"{path}: {tops}; {args.method} map of {result.target_name} -> {picture}")
    return 0


def cmd_export(args) -> int:
    from fmnist_core.analysis.metrics import analyze
    from fmnist_core.analysis.model_card import ExportFacts, build_card
    from fmnist_core.base.files import atomic_write_bytes
    from fmnist_core.formats.checkpoint import load_checkpoint
    from fmnist_core.images.data import load_fashion_mnist, normalize
    from fmnist_core.use.export import FORMATS, TOLERANCE, ExportCheckFailed, ExportError, default_output, ensure_writable, export_model

    if args.format not in FORMATS:
        raise ExportError(f"unsupported format '{args.format}'; use one of: {', '.join(FORMATS)}")
    if not 1 <= args.check_images <= 10_000:
        raise ExportError(f"--check-images {args.check_images} is out of range; use 1 to 10000 (the test set's size)")
    loaded = load_checkpoint(args.checkpoint)
    out = Path(args.out) if args.out else default_output(loaded.path, args.format)
    if os.path.isdir(out):  # False, not an error, for a name too long to look up (ensure_writable says why)
        out = out / default_output(loaded.path, args.format).name
    card = out.with_suffix(".md") if args.card else None
    ensure_writable(out)
    if card is not None:
        ensure_writable(card)
    data = load_fashion_mnist()
    images, labels = normalize(data.test_images[: args.check_images]), data.test_labels[: args.check_images]
    try:
        result = export_model(loaded.model, args.format, out, images, labels)
    except ExportCheckFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    check = result.check
    runner = "onnxruntime" if args.format == "onnx" else "torch.jit.load"
    print(f"exported {loaded.name} to {out} ({result.size_bytes / 1e3:,.0f} KB), sha256 {result.sha256}")
    print(f"checked with {runner} on {check.images:,} test images: largest difference of a probability from PyTorch "
          f"{check.max_difference:.1e} (limit {TOLERANCE:.0e}); accuracy {check.export_accuracy:.2f}% (PyTorch {check.torch_accuracy:.2f}%)")
    if card is not None:
        facts = ExportFacts(out.name, args.format, result.sha256, result.size_bytes, check.images, check.max_difference)
        title = loaded.path.parent.name if loaded.path.suffix == ".safetensors" else loaded.path.name
        atomic_write_bytes(card, build_card(title, loaded.metadata, analyze(loaded.model, data), data, facts).encode())
        print(f"model card: {card}")
    return 0


def add_explain_export_commands(sub) -> None:
    p = sub.add_parser("explain", help="heatmaps of what a model looked at (Captum), as overlay PNGs")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("images", nargs="+")
    p.add_argument("--method", default="ig", help="ig (Integrated Gradients, default), occlusion, or gradcam (conv models)")
    p.add_argument("--target", help="class to explain, by name (Coat) or index (4); default: each image's top class")
    p.add_argument("--out", help="folder for the PNGs (default: <runs>/.exports/explanations, see README)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--out", help="file to write (default: <runs>/.exports/<run folder>.onnx or .pt; a folder puts it there)")
    p.add_argument("--card", action="store_true", help="also write a Markdown model card beside it (<out>.md)")
    p.add_argument("--check-images", dest="check_images", type=int, default=10_000,
                   help="test images the export is compared with PyTorch on (default: all 10,000)")
    p.set_defaults(func=cmd_export)


# ---- sweep: many runs at once on Ray Tune (fmnist_core.sweeps.sweep) -------------------------------


def sweep_spec(args, owner: str):
    """The SweepSpec of parsed `sweep` arguments: the one place they become a spec (the
    Sweep page's launcher passes SweepSpec.to_args(), parsed here once)."""
    from fmnist_core.sweeps.sweep import SweepSpec
    from fmnist_core.sweeps.sweep_space import parse_space

    return SweepSpec(base=_config_from_args(args), space=parse_space(args.grid, args.sample), trials=args.trials, search=args.search,
                     early_stop=args.early_stop, grace_period=args.grace_period, max_concurrent=args.max_concurrent,
                     cpus_per_trial=args.cpus_per_trial, name=args.name or "", subset=args.subset, owner=owner)


def parse_sweep_args(argv: list[str], owner: str):
    """`sweep` arguments (as SweepSpec.to_args gives them) to a SweepSpec, as the driver reads them."""
    return sweep_spec(build_parser("sweep").parse_args(["sweep", *argv]), owner)


def cmd_sweep(args) -> int:
    from fmnist_core.base.statuses import SweepStatus
    from fmnist_core.store.access import LOCAL_OWNER
    from fmnist_core.sweeps.sweep import OWNER_ENV, run_sweep

    owner = os.environ.get(OWNER_ENV) or LOCAL_OWNER
    try:
        spec = sweep_spec(args, owner)
    except UserError as e:
        if args.id:  # launched by the Sweep page, which lists this id: it stays listed, as failed, with the reason
            from fmnist_core.store.run_store import RunStore
            from fmnist_core.sweeps.sweep import record_failed_start
            from fmnist_core.sweeps.sweep_store import SweepStore

            sweeps = SweepStore(RunStore())
            if not sweeps.path(args.id).exists():
                record_failed_start(sweeps, args.id, e, name=args.name or "", owner=owner)
        raise
    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
    summary_row = run_sweep(spec, address=args.address, sweep_id=args.id, echo=echo)
    if args.json:
        print(json.dumps(summary_row))
    else:
        best = summary_row["best"]
        counts = ", ".join(f"{n} {s}" for s, n in summary_row["statuses"].items())
        print(f"{summary_row['sweep']}: {summary_row['status']}, {summary_row['trials']} trial(s) ({counts}) in {summary_row['seconds']:.0f} s")
        if best:
            print(f"best: {best['run']}, test accuracy {best['test_accuracy']:.2f}% with {best['config']}")
    return 0 if summary_row["status"] in (SweepStatus.FINISHED, SweepStatus.STOPPED) else 1


SWEEP_HELP = "many runs at once on Ray Tune: a grid or random/Optuna search over the train settings"


def add_recipe_flag(p, help_text: str) -> None:
    """--recipe NAME. A renamed recipe's old name is let through argparse, so that recipe_config
    can say its new name instead of argparse listing every choice."""
    from fmnist_core.modeling.recipes import RECIPES, RENAMED

    p.add_argument("--recipe", choices=[*RECIPES, *RENAMED], metavar="{" + ",".join(RECIPES) + "}", help=help_text)


def _add_sweep_command(sub) -> None:
    from fmnist_core.sweeps.sweep import DEFAULT_SAMPLED_TRIALS, EARLY_STOPS, SEARCHES

    p = sub.add_parser("sweep", help=SWEEP_HELP,
                       description="The train flags set the base config of every trial; --grid and --sample vary settings.")
    add_recipe_flag(p, "base config from a named recipe; other flags override it")
    add_setting_flags(p)
    p.add_argument("--grid", action="append", metavar="NAME=V1,V2", help="try every value (all combinations with other --grid)")
    p.add_argument("--sample", action="append", metavar="NAME=DIST",
                   help="draw per trial: loguniform:LOW:HIGH, uniform:LOW:HIGH, randint:LOW:HIGH (inclusive) or choice:A,B")
    p.add_argument("--trials", type=int, help=f"random draws of the space (default {DEFAULT_SAMPLED_TRIALS} with --sample; "
                                              "with --grid, each draw runs every combination)")
    p.add_argument("--search", choices=SEARCHES, default="random", help="random draws, or Optuna's TPE (model-based; --sample only)")
    p.add_argument("--early-stop", dest="early_stop", choices=EARLY_STOPS, default="none", help="asha: stop poor trials early (off by default)")
    p.add_argument("--grace-period", dest="grace_period", type=int, default=1, help="epochs every trial runs before ASHA may stop it")
    p.add_argument("--max-concurrent", dest="max_concurrent", type=int, help="trials at once (default: as many as the CPUs allow)")
    p.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=int, default=1, help="CPUs Ray reserves per trial = its torch threads (default 1)")
    p.add_argument("--address", help="HOST:PORT of a Ray cluster's head (default: $RAY_ADDRESS, else a local Ray in this process)")
    # --name (a train flag) names the sweep; each trial is named after it and its values
    p.add_argument("--id", help=argparse.SUPPRESS)  # the Sweep page picks the id so it can show the sweep at once
    p.add_argument("--subset", type=int, help="train and test on the first N images only: for quick tries and tests")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_sweep)


# ---- photos (issue 20) ------------------------------------------------------------------------


def _split_items(split: str, count: int):
    """The first `count` items of a split: uint8 (N, 28, 28) and labels (N,)."""
    from fmnist_core.images.data import load_fashion_mnist

    data = load_fashion_mnist()
    images, labels = (data.train_images, data.train_labels) if split == "train" else (data.test_images, data.test_labels)
    if not 1 <= count <= len(labels):
        raise UserError(f"--count: {count} is out of range; use 1 to {len(labels):,} for the {split} images")
    return images[:count].numpy(), labels[:count].numpy()


def cmd_photos_synth(args) -> int:
    from fmnist_core.images.photo_synth import synth_photos, write_image_folder

    images, labels = _split_items(args.split, args.count)
    write_image_folder(synth_photos(images, labels, seed=args.seed, look=args.look), Path(args.out))
    print(f"{args.count} photos ({args.look} look, {args.split} images, seed {args.seed}) in {args.out}")
    return 0


def cmd_photos_measure(args) -> int:
    from fmnist_core.formats.checkpoint import load_checkpoint
    from fmnist_core.use.photo_measure import measure_photos

    images, labels = _split_items(args.split, args.count)
    for checkpoint in args.checkpoints:
        result = measure_photos(load_checkpoint(checkpoint).model, images, labels, seed=args.seed, look=args.look)
        if args.json:
            print(json.dumps({"checkpoint": checkpoint, **vars(result)}))
            continue
        print(f"{checkpoint}: {result.photo_accuracy:.1%} on {result.count} photos, {result.image_accuracy:.1%} on the same items "
              f"as 28x28 images; mask IoU {result.mean_iou:.2f}; no item found in {result.no_item}; "
              f"find_item {result.milliseconds_p50:.0f} ms p50")
        for name, (photo, image) in result.per_class.items():
            print(f"  {name:<12} {photo:6.1%} {image:6.1%}")
        for name, (photo, overlap) in result.per_family.items():
            print(f"  surface {name:<6} {photo:6.1%}  IoU {overlap:.2f}")
    return 0


def add_synthetic_photo_commands(photos) -> None:
    """synth and measure under `photos`: phone-like photos made from Fashion-MNIST items."""
    from fmnist_core.images.photo_synth import LOOKS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--from", dest="split", choices=("test", "train"), default="test", help="which images to photograph (default: test)")
    common.add_argument("--count", type=int, default=500, help="how many (the first N of the split; default 500)")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--look", choices=list(LOOKS), default="default",
                        help="surfaces and light: default (bed, wood, floor), one of them, or night (kept out of tuning)")
    q = photos.add_parser("synth", parents=[common], help="make phone-like photos of Fashion-MNIST items, one folder per class")
    q.add_argument("--out", required=True, help="folder to create (ImageFolder layout)")
    q.set_defaults(func=cmd_photos_synth)
    q = photos.add_parser("measure", parents=[common], help="accuracy on synthetic photos beside the same items as 28x28 images")
    q.add_argument("checkpoints", nargs="*", default=["checkpoints/pretrained/resnet_fm_best"], help="run folders or model files")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_photos_measure)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig setting, made from its declaration (config.SETTINGS).
    Values are range-checked by TrainConfig.validate(), so the CLI, the form and a sweep
    give the same message for the same mistake."""
    from fmnist_core.modeling.config import DEFAULTS, SETTINGS, flag_of

    for name, declared in SETTINGS.items():
        facts = [declared.describe_range()] if declared.kind in ("int", "float", "text") else []
        facts += [declared.unit] if declared.unit else []
        facts.append(f"default: {DEFAULTS[name] if DEFAULTS[name] not in (None, '') else 'none'}")
        help_text = f"{declared.help} ({'; '.join(facts)})"
        kwargs: dict[str, Any] = dict(dest=name, default=None, help=help_text.replace("%", "%%"))
        if declared.kind == "bool":
            parser.add_argument(flag_of(name), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            metavar = "{" + ",".join(map(str, declared.allowed())) + "}" if declared.kind == "choice" else declared.kind.upper()
            parser.add_argument(flag_of(name), type=_typed(declared), metavar=metavar, **kwargs)


def _typed(declared):
    """argparse type: parse, turning our UserError into argparse's own 'invalid value'."""
    def parse(text: str):
        try:
            return declared.parse(text)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = declared.kind
    return parse


class OneLineErrors(argparse.ArgumentParser):
    """A bad command line is one line, as every other refusal is (not 20 lines of usage);
    --help still prints the usage. Subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog.removeprefix('python -m ')}: {message}; see {self.prog} --help\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command`, only that command's flags (see the module's docstring)."""
    def wants(name: str) -> bool:
        return command is None or command == name

    parser = OneLineErrors(prog="python -m fmnist_core", description="Fashion-MNIST Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("data", help="find (or download) the data set and report it").set_defaults(func=cmd_data)
    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    p = sub.add_parser("summary", help="a model's layer table, as in the report")
    p.add_argument("name")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a model and save the run")
    if wants("train"):
        from fmnist_core.modeling.config import SOURCE_FIELDS
        from fmnist_core.modeling.recipes import RECIPES
        from fmnist_core.training.engine import PHOTO_BATCH_SHARE
        from fmnist_core.training.finetune import FINETUNE_EPOCHS, FINETUNE_LR_FACTOR, FINETUNE_SCHEDULE
        from fmnist_core.training.photo_data import SPLIT

        add_recipe_flag(p, "start from a named recipe; other flags override it")
        add_setting_flags(p)
        p.add_argument("--out", help="run folder to create (default: checkpoints/runs/<id>)")
        p.add_argument(SOURCE_FIELDS["init_from"], dest="init_from", metavar="CHECKPOINT",
                       help="fine-tune: start from this run folder's (or .safetensors file's) weights, with its architecture and "
                            f"settings, {FINETUNE_EPOCHS} epochs at {FINETUNE_LR_FACTOR:g}x its learning rate ({FINETUNE_SCHEDULE}); "
                            "other flags override")
        p.add_argument(SOURCE_FIELDS["photos"], dest="photos", metavar="NAME_OR_DIR", help="mix a photo set (a stored set's name, see "
                       "`photos list`, or a folder with one subfolder per class) into "
                       f"every batch ({PHOTO_BATCH_SHARE * 100:.0f}%% of it) and report accuracy on its held-out part "
                       f"({SPLIT.replace('%', '%%')}) each epoch")
        p.add_argument("--resume", metavar="RUN_FOLDER", help="continue an interrupted, stopped or failed run from its last finished epoch")
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint (and its accuracy on a photo set)")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--photos", metavar="NAME", help="also score it on this photo set (see `photos list`)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    if wants("predict"):
        from fmnist_core.use.inference import MAX_IMAGE_BYTES

        p = sub.add_parser(
            "predict", help="classify image files",
            description=f"Classify image files (PNG, JPEG, WebP, BMP, GIF, TIFF; up to {MAX_IMAGE_BYTES // 2**20} MB each). "
                        "A file that cannot be used is reported on stderr, one line each, and the others are still "
                        "classified; the exit status is then 2, after the good ones are printed.",
        )
        p.add_argument("checkpoint", help="a run folder or its model.safetensors")
        p.add_argument("images", nargs="+", help="image files")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_predict)
    else:
        sub.add_parser("predict", help="classify image files")

    p = sub.add_parser("reproduce", help="retrain the report's Table 1 (or a study) and write results/")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--only", nargs="+", help="row names to run (default: all)")
    p.add_argument("--study", choices=("table1", "optimizers", "init"), default="table1")
    p.add_argument("--results", default="results")
    p.add_argument("--tables-only", dest="tables_only", action="store_true", help="rewrite the tables from the run store, train nothing")
    p.add_argument("--parallel", type=int, help="run the rows as a Ray Tune sweep, N at a time with one thread each (see `sweep`)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="print speed tables: throughput, time to accuracy, latency")
    if wants("bench"):
        from fmnist_core.modeling.recipes import RECIPES

        p.add_argument("--quick", action="store_true", help="a short version (~4 minutes on one core)")
        p.add_argument("--busy", action="store_true", help="only section 6: one epoch of fast, idle and beside a busy core, at "
                       "automatic threads, 1 and 2 (~3 minutes on an idle 2-core machine)")
        p.add_argument("--repeats", type=int, default=2, help="with --busy: best of this many runs per cell (default 2)")
        p.add_argument("--photo", action="store_true", help="only section 7: a 12-megapixel JPEG through Predict's photo "
                       "preprocessing, CPU ms on one thread (~10 s)")
        p.add_argument("--seeds", type=int, default=3)
        p.add_argument("--threads", type=int, default=1, help="torch threads for every measurement (default 1)")
        p.add_argument("--recipes", nargs="+", choices=list(RECIPES), help="recipes to time (default: fast and balanced, each after the recipe "
                       "it replaced, e.g. fast_v1; 'resnet_12ep' takes ~40 min a seed)")
        p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    add_explain_export_commands(sub)
    if wants("sweep"):
        _add_sweep_command(sub)
    else:
        sub.add_parser("sweep", help=SWEEP_HELP)
    photos = sub.add_parser("photos", help="photo sets: your own labelled photos, and synthetic phone-like ones, to measure models on")
    if wants("photos"):
        photo_commands = photos.add_subparsers(dest="photos_command", required=True)
        add_photoset_commands(photo_commands)
        add_synthetic_photo_commands(photo_commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # the top level has no options but -h
    args = build_parser(command).parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # now, not at exit: a reader that went away is then caught below
        return code
    except BrokenPipeError:
        # `fmnist models | head -2`: the reader has what it wanted. End quietly, as other Unix
        # tools do, with nothing left for Python to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except UserError as e:  # anything else is a bug: its traceback stays
        from fmnist_core.modeling.config import ConfigError, flag_of

        message = e.message if isinstance(e, ConfigError) else str(e)
        field = f"{flag_of(e.field)}: " if isinstance(e, ConfigError) else ""
        print(f"error: {field}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished epochs are saved in the run folder", file=sys.stderr)
        return 130


def main_exit() -> None:
    """The `fmnist` console script (pyproject.toml)."""
    sys.exit(main())
