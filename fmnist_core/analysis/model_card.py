"""A Markdown model card for a trained checkpoint: what it is, how it was trained, how
well it does on the test set (per class too), the command that rebuilds it, and the
checksum of its export.

The numbers come from the test set, scored now (metrics.analyze, scoring), not copied
from the training log: the card describes the weights it ships with.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fmnist_core.analysis.metrics import Analysis
from fmnist_core.base.markdown_text import code_fence, escape_markdown, one_line
from fmnist_core.images.data import CLASSES, MEAN, STD, FashionMNIST
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, SOURCE_FIELDS, flag_of
from fmnist_core.modeling.models import model_info
from fmnist_core.use.scoring import score_probabilities


@dataclass
class ExportFacts:
    """The export the card goes with (export.ExportResult, in the card's terms)."""

    file_name: str
    format: str
    sha256: str
    size_bytes: int
    checked_images: int
    max_difference: float


def rebuild_command(config: dict) -> str:
    """`python -m fmnist_core train ...` with a flag for every setting (flags from
    config.SETTINGS, named by config.flag_of as the CLI names them). Defaults are spelled out too, so the
    command still rebuilds this model after a later version changes a default. A setting
    the saved config predates takes the default it had: its value when it did not exist."""

    parts = ["python", "-m", "fmnist_core", "train"]
    for name, declared in SETTINGS.items():
        value = config.get(name, DEFAULTS[name])
        if value is None or value == "":  # "the model's own default" / no name: no flag says it
            continue
        if declared.kind == "bool":
            parts.append(flag_of(name) if value else "--no-" + flag_of(name)[2:])
        else:  # text on one line (a run name): the command stays one line of its block
            parts += [flag_of(name), shlex.quote(one_line(str(value)))]
    for name, flag in SOURCE_FIELDS.items():
        if config.get(name):
            parts += [flag, shlex.quote(one_line(str(config[name])))]
    return " ".join(parts)


def _code(text) -> str:
    """User text (a path, a set's name) as a Markdown code span it cannot break out of."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def provenance_lines(config: dict) -> list[str]:
    """'Fine-tuned from ...' and the photo set mixed in, from a run's config (finetune.prepare_sources)."""
    extra = config["extra"] if isinstance(config.get("extra"), dict) else {}
    lines = []
    if config.get("init_from"):
        source = extra.get("fine_tuned_from") or {}
        found = [f"model `{source['model']}`" if isinstance(source.get("model"), str) else None,
                 f"its test accuracy {source['test_accuracy']:.2f}%" if isinstance(source.get("test_accuracy"), (int, float)) else None,
                 f"SHA-256 `{source['sha256'][:16]}…`" if isinstance(source.get("sha256"), str) else None]
        facts = [f for f in found if f]
        lines.append(f"- Fine-tuned from {_code(config['init_from'])}" + (f" ({', '.join(facts)})" if facts else ""))
    if config.get("photos"):
        photos = extra.get("photos") or {}
        found = [f"{photos['train']} training and {photos['heldout']} held-out photos" if {"train", "heldout"} <= set(photos) else None,
                 f"split: {photos['split']}" if isinstance(photos.get("split"), str) else None,
                 f"content SHA-256 `{photos['hash'][:16]}…`" if isinstance(photos.get("hash"), str) else None]
        facts = [f for f in found if f]
        lines.append(f"- Photo set mixed into every batch: {_code(config['photos'])}" + (f" ({'; '.join(facts)})" if facts else ""))
    return lines


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _seconds(value) -> str:
    if not isinstance(value, (int, float)):
        return "not recorded"
    minutes, seconds = divmod(round(value), 60)
    return f"{value:.0f} s ({minutes} min {seconds} s)" if minutes else f"{value:.0f} s"


def build_card(title: str, metadata: dict, analysis: Analysis, data: FashionMNIST, export: ExportFacts | None = None) -> str:
    """The card as Markdown. `metadata` is checkpoint.read_metadata's; `analysis` the
    test-set predictions of the same weights (metrics.analyze)."""
    config = metadata.get("config") or {}
    trained = metadata.get("metrics") or {}
    scores = score_probabilities(analysis.probabilities, analysis.labels)
    name = metadata.get("model", "?")
    try:
        description = model_info(name).description
    except ValueError:
        description = "(not in this version's registry)"
    patch = config.get("patch") or 0
    # The title (a run name) and the config's values are user text: escaped, on one line, so
    # they cannot add an image, HTML, a heading or a table cell to the card.
    lines = [f"# Model card: {escape_markdown(title)}", ""]
    lines += ["## Model", "", f"- Architecture: `{name}`: {description}", f"- Parameters: {metadata.get('params', 0):,}",
              f"- Constructor arguments: `{metadata.get('model_args', {})}`",
              f"- Input: one 28x28 grayscale image, light item on black, scaled to [0, 1] then (x - {MEAN}) / {STD}",
              f"- Output: probabilities of the {len(CLASSES)} classes: {', '.join(CLASSES)}"]
    if patch:
        lines.append(f"- Trained on {patch}x{patch} tiles; an image's class is the mean of its tiles' probabilities")
    lines += ["", "## Training configuration", ""]
    if config:
        lines += _table(["setting", "value"], [[f"`{k}`", escape_markdown(str(config[k]))] for k in SETTINGS if k in config])
    else:
        lines.append("Not recorded in this checkpoint.")
    held_out = config.get("validation", 0) or 0
    lines += ["", "## Data", "",
              f"Fashion-MNIST ({data.source}): {len(data.train_labels):,} training images"
              + (f", of which {held_out:,} held out for validation" if held_out else "")
              + f"; {len(data.test_labels):,} test images, used only to report the figures below."
              + (" Training used random horizontal flips and shifts of up to 2 px." if config.get("augment") else "")]
    lines += ["", "## Training", "", *provenance_lines(config),
              f"- Epochs: {trained.get('epoch', 'not recorded')}",
              f"- Training time: {_seconds(trained.get('elapsed_s'))}",
              f"- Final training accuracy: {trained['train_accuracy']:.2f}%" if isinstance(trained.get("train_accuracy"), (int, float))
              else "- Final training accuracy: not recorded"]
    if isinstance(trained.get("photo_accuracy"), (int, float)):
        lines.append(f"- Accuracy on the photo set's held-out part: {trained['photo_accuracy']:.2f}%")
    lines += ["", "## Test results", "",
              f"- Test accuracy: {scores['accuracy']:.2f}% on {len(analysis.labels):,} images",
              f"- Test loss (mean negative log-likelihood): {scores['loss']:.4f}", "", "Per-class accuracy:", ""]
    lines += _table(["class", "accuracy %"], [[c, f"{a:.2f}"] for c, a in zip(CLASSES, analysis.per_class_accuracy)])
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
    lines += _table(["true \\ predicted", *CLASSES], [[c, *row] for c, row in zip(CLASSES, analysis.matrix)])
    command = rebuild_command(config) if config else f"python -m fmnist_core train --model {name}"
    fence = code_fence(command) * 3  # longer than any backtick run in a quoted name: the block holds it whole
    lines += ["", "## Rebuild", "", "Same config, same seed, same machine: the same numbers.", "", f"{fence}sh", command, fence]
    if export is not None:
        lines += ["", "## Export", "",
                  f"- File: {escape_markdown(export.file_name)} ({export.format}, {export.size_bytes:,} bytes)",
                  f"- SHA-256: `{export.sha256}`",
                  f"- Checked against PyTorch on {export.checked_images:,} test images: "
                  f"largest difference of a probability {export.max_difference:.1e}"]
    return "\n".join(lines) + "\n"

