"""`python -m fmnist_core ...`: everything the app does, headless.

Every user error ends with exit status 2 and one line on stderr that says what is wrong
and how to fix it; nothing is written before the input has been checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from PIL import Image

from .checkpoint import atomic_write_bytes, load_checkpoint
from .config import DEFAULTS, SETTINGS, ConfigError, TrainConfig, flag_of
from .console import ConsoleProgress
from .data import CLASSES, load_fashion_mnist, normalize
from .errors import UserError
from .inference import MAX_IMAGE_BYTES, ImageError, open_image, predict_images, read_image_file, to_model_input
from .models import count_parameters, create_model, list_models, model_info, summary
from .scoring import evaluate


def _config_from_args(args) -> TrainConfig:
    from .recipes import recipe_config

    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = recipe_config(args.recipe, **given) if args.recipe else TrainConfig(**given)
    return config.validate()


def cmd_train(args) -> int:
    from .access import Policy
    from .run_manager import DISK_FULL, check_resume, disk_full, rewind_to_resume_point, train_run
    from .run_store import RunStore, result_from

    resume = None
    if args.resume:
        given = [flag_of(k) for k, v in vars(args).items() if v is not None and (k in SETTINGS or k in ("recipe", "out"))]
        if given:
            raise UserError(f"--resume continues a run with its own settings; drop {', '.join(given)}")
        load_fashion_mnist()
        folder = Path(args.resume).absolute()
        store, run_id = RunStore(folder.parent), folder.name
        config, resume = check_resume(store, run_id)
        Policy().check_config(config)  # as the app: a run bigger than this machine would be killed mid-epoch
        rewind_to_resume_point(store, run_id, resume)
    else:
        config = _config_from_args(args)
        Policy().check_config(config)  # as the app: a run bigger than this machine would be killed mid-epoch
        load_fashion_mnist()  # fail before creating anything if the data is missing
        out = Path(args.out) if args.out else None
        store = RunStore(out.parent) if out is not None else RunStore()
        try:
            run_id = store.create(config, run_id=out.name if out is not None else None).name
        except UserError as e:
            raise UserError(f"--out: {e}" if out is not None else str(e)) from e
    try:
        result = train_run(store, run_id, config, callbacks=[ConsoleProgress(quiet=args.json)], resume=resume)
    except Exception as e:
        if not disk_full(e):
            raise
        try:  # the run ends as failed, not interrupted, if there is room for its result
            store.write_result(run_id, result_from("failed", DISK_FULL, store.read(run_id).history, 0.0, None))
        except OSError:
            pass
        raise UserError(f"{DISK_FULL} (run folder {store.root / run_id})") from e
    checkpoint = store.root / run_id
    if result["status"] != "finished":
        print(f"{result['status']}: {result['message']}", file=sys.stderr)
    summary_row = {"model": config.model, **result, "epochs": result["epochs_done"], "checkpoint": str(checkpoint)}
    if args.json:
        print(json.dumps(summary_row))
    else:
        print(f"saved to {checkpoint}")
    return 0 if result["status"] in ("finished", "stopped") else 1


def cmd_evaluate(args) -> int:
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
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{loaded.name} ({row['params']:,} params): test accuracy {metrics['accuracy']:.2f}%, test loss {metrics['loss']:.4f}")
    return 0


def cmd_predict(args) -> int:
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
    rows = [{"image": str(p), "label": pr.label, "probability": pr.probability, "top": [[c, v] for c, v in pr.top]}
            for p, pr in zip(names, predictions)]
    if args.json:
        print(json.dumps({"predictions": rows, "errors": errors}))
    else:
        for row in rows:
            tops = ", ".join(f"{c} {v:.1%}" for c, v in row["top"])
            print(f"{row['image']}: {tops}")
    return 2 if errors else 0


def cmd_models(args) -> int:
    print(f"{'name':<12} {'params':>10}  description")
    for name in list_models():
        print(f"{name:<12} {count_parameters(create_model(name)):>10,}  {model_info(name).description}")
    return 0


def cmd_summary(args) -> int:
    print(summary(create_model(args.name)))
    return 0


def cmd_data(args) -> int:
    from .data import ensure_data

    directory = ensure_data()
    data = load_fashion_mnist(directory)
    print(f"Fashion-MNIST: {len(data.train_labels):,} training and {len(data.test_labels):,} test images in {directory}")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import run_reproduce

    if args.parallel is not None and not 1 <= args.parallel <= 64:
        raise UserError(f"--parallel: {args.parallel} is out of range; use 1 to 64 rows at a time")
    return run_reproduce(epochs=args.epochs, only=args.only, study=args.study, out_dir=Path(args.results), tables_only=args.tables_only,
                         parallel=args.parallel)


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(quick=args.quick, as_json=args.json, seeds=args.seeds, threads=args.threads, recipes=args.recipes)


# ---- explain and export (issue 13) ----------------------------------------------------------


def _model_inputs(paths: list[str]) -> list:
    """Each image file as the uint8 (28, 28) input the model sees; a bad file names itself."""
    inputs = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror})") from e
        try:
            inputs.append(to_model_input(open_image(data)))
        except ImageError as e:
            raise ImageError(f"{path}: {e}") from e
    return inputs


def cmd_explain(args) -> int:
    from .explain import ExplainError, check_method, class_index, explain, overlay
    from .export import ensure_writable

    loaded = load_checkpoint(args.checkpoint)
    check_method(loaded.model, args.method)
    target = class_index(args.target) if args.target is not None else None
    inputs = _model_inputs(args.images)  # every input checked before anything is written
    out = Path(args.out)
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
    from .export import FORMATS, ExportCheckFailed, ExportError, default_output, ensure_writable, export_model
    from .metrics import analyze
    from .model_card import ExportFacts, build_card

    if args.format not in FORMATS:
        raise ExportError(f"unsupported format '{args.format}'; use one of: {', '.join(FORMATS)}")
    if not 1 <= args.check_images <= 10_000:
        raise ExportError(f"--check-images {args.check_images} is out of range; use 1 to 10000 (the test set's size)")
    loaded = load_checkpoint(args.checkpoint)
    out = Path(args.out) if args.out else default_output(loaded.path, args.format)
    if out.is_dir():
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
          f"{check.max_difference:.1e} (limit 1e-04); accuracy {check.export_accuracy:.2f}% (PyTorch {check.torch_accuracy:.2f}%)")
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
    p.add_argument("--out", default="explanations", help="folder for the PNGs (default: ./explanations)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript, checked against PyTorch")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    p.add_argument("--out", help="file to write (default: ./<run folder>.onnx or .pt; a folder puts it there)")
    p.add_argument("--card", action="store_true", help="also write a Markdown model card beside it (<out>.md)")
    p.add_argument("--check-images", dest="check_images", type=int, default=10_000,
                   help="test images the export is compared with PyTorch on (default: all 10,000)")
    p.set_defaults(func=cmd_export)


# ---- sweep: many runs at once on Ray Tune (fmnist_core.sweep) -------------------------------


def cmd_sweep(args) -> int:
    from .access import LOCAL_OWNER
    from .sweep import OWNER_ENV, SweepSpec, run_sweep
    from .sweep_space import parse_space

    base = _config_from_args(args)
    spec = SweepSpec(base=base, space=parse_space(args.grid, args.sample), trials=args.trials, search=args.search,
                     early_stop=args.early_stop, grace_period=args.grace_period, max_concurrent=args.max_concurrent,
                     cpus_per_trial=args.cpus_per_trial, name=args.name or "", subset=args.subset,
                     owner=os.environ.get(OWNER_ENV) or LOCAL_OWNER)
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
    return 0 if summary_row["status"] in ("finished", "stopped") else 1


def _add_sweep_command(sub) -> None:
    from .recipes import RECIPES
    from .sweep import DEFAULT_SAMPLED_TRIALS, EARLY_STOPS, SEARCHES

    p = sub.add_parser("sweep", help="many runs at once on Ray Tune: a grid or random/Optuna search over the train settings",
                       description="The train flags set the base config of every trial; --grid and --sample vary settings.")
    p.add_argument("--recipe", choices=list(RECIPES), help="base config from a named recipe; other flags override it")
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


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig setting, made from its declaration (config.SETTINGS).
    Values are range-checked by TrainConfig.validate(), so the CLI, the form and a sweep
    give the same message for the same mistake."""
    for name, declared in SETTINGS.items():
        facts = [declared.describe_range()] if declared.kind in ("int", "float", "text") else []
        facts += [declared.unit] if declared.unit else []
        facts.append(f"default: {DEFAULTS[name] if DEFAULTS[name] not in (None, '') else 'none'}")
        help_text = f"{declared.help} ({'; '.join(facts)})"
        kwargs = dict(dest=name, default=None, help=help_text.replace("%", "%%"))
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


def build_parser() -> argparse.ArgumentParser:
    from .recipes import RECIPES

    parser = argparse.ArgumentParser(prog="python -m fmnist_core", description="Fashion-MNIST Studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("data", help="find (or download) the data set and report it").set_defaults(func=cmd_data)
    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    p = sub.add_parser("summary", help="a model's layer table, as in the report")
    p.add_argument("name")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("train", help="train a model and save the run")
    p.add_argument("--recipe", choices=list(RECIPES), help="start from a named recipe; other flags override it")
    add_setting_flags(p)
    p.add_argument("--out", help="run folder to create (default: checkpoints/runs/<id>)")
    p.add_argument("--resume", metavar="RUN_FOLDER", help="continue an interrupted, stopped or failed run from its last finished epoch")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy of a checkpoint")
    p.add_argument("checkpoint", help="a run folder or its model.safetensors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

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

    p = sub.add_parser("reproduce", help="retrain the report's Table 1 (or a study) and write results/")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--only", nargs="+", help="row names to run (default: all)")
    p.add_argument("--study", choices=("table1", "optimizers", "init"), default="table1")
    p.add_argument("--results", default="results")
    p.add_argument("--tables-only", dest="tables_only", action="store_true", help="rewrite the tables from the run store, train nothing")
    p.add_argument("--parallel", type=int, help="run the rows as a Ray Tune sweep, N at a time with one thread each (see `sweep`)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="print speed tables: throughput, time to accuracy, latency")
    p.add_argument("--quick", action="store_true", help="a short version (under 3 minutes)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads for every measurement (default 1)")
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), help="recipes to time (default: fast and balanced, each after the recipe it replaced, "
                   "e.g. fast_v1; 'best' takes ~40 min a seed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    add_explain_export_commands(sub)
    _add_sweep_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:  # anything else is a bug: its traceback stays
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
