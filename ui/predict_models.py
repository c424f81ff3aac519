"""The Predict page's models and answers, without Streamlit: the models a visitor can pick,
the one-line verdict over several models' answers, and which model to suggest for photos.
Plain functions over plain data, so tests call them without a page."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_core.use.inference import Prediction

if TYPE_CHECKING:  # a type only: loading is the caller's (ui.state.cached_model)
    from torch import nn


@dataclass(frozen=True)
class Choice:
    """One model on the Model menu."""

    name: str  # short, unique on the page
    test_accuracy: float | None
    load: Callable[[], nn.Module]  # loaded when first used: with 30 checkpoints, one model is the usual case
    path: Path | None = None  # the checkpoint file; None for an uploaded one (nothing to export)
    trained_on_photos: bool = False  # photos were mixed into its training (Upload and Camera suggest such a model)


def verdict_line(results: list[tuple[Choice, Prediction]], truth: str | None = None) -> str:
    """One short Markdown line: the answer, or how many models agree on the most common one."""
    if len(results) == 1:
        prediction = results[0][1]
        line = f"**{prediction.label}** · {prediction.probability:.1%}"
    else:
        # Most models' answer; a tie goes to the answer met first, i.e. the most accurate model's
        # (shipped models come first, best first).
        top, votes = Counter(prediction.label for _, prediction in results).most_common(1)[0]
        line = f"**{top}** · {votes} of {len(results)} models"
    if truth is not None:
        line += " ✓" if all(p.label == truth for _, p in results) else f" (true: {truth})"
    return line


def photo_model_to_suggest(choices: dict[str, Choice], chosen: str) -> str | None:
    """The menu label of the model to suggest for a photo: when the chosen model never saw a
    photo in training, the most accurate listed one that did (resnet_fm_photos names 88% of
    500 synthetic photos against 82% for resnet_fm_best); None when there is nothing to suggest."""
    if choices[chosen].trained_on_photos:
        return None
    photo_models = [label for label, choice in choices.items() if choice.trained_on_photos]
    return max(photo_models, key=lambda label: choices[label].test_accuracy or 0.0) if photo_models else None
