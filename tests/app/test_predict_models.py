"""Predict's models and answers without a page (ui/predict_models.py): the verdict over several
models, and the model suggested for a photo."""

from __future__ import annotations

from fmnist_core.images.data import CLASSES
from fmnist_core.use.inference import Prediction
from ui.predict_models import Choice, photo_model_to_suggest, verdict_line


def answer(label: str, probability: float = 0.9) -> Prediction:
    probabilities = [(1 - probability) / 9] * 10
    probabilities[CLASSES.index(label)] = probability
    return Prediction(label, probability, probabilities, [(label, probability)], 0.1)


def choice(name: str, accuracy: float | None, photos: bool = False) -> Choice:
    return Choice(name, accuracy, lambda: None, None, photos)  # type: ignore[arg-type, return-value]


def test_one_model_says_its_answer_and_several_say_how_many_agree():
    one = [(choice("a", 90.0), answer("Trouser", 0.875))]
    assert verdict_line(one) == "**Trouser** · 87.5%"
    assert verdict_line(one, truth="Trouser") == "**Trouser** · 87.5% ✓"
    three = [(choice("a", 93.0), answer("Shirt")), (choice("b", 92.0), answer("Coat")), (choice("c", 91.0), answer("Coat"))]
    assert verdict_line(three) == "**Coat** · 2 of 3 models"
    assert verdict_line(three, truth="Coat") == "**Coat** · 2 of 3 models (true: Coat)"  # not all of them right
    tie = [(choice("a", 93.0), answer("Shirt")), (choice("b", 92.0), answer("Coat"))]
    assert verdict_line(tie) == "**Shirt** · 1 of 2 models"  # a tie goes to the first (most accurate) model


def test_a_photo_is_pointed_at_the_most_accurate_model_that_saw_photos():
    choices = {"best": choice("resnet_fm_best", 93.81), "photos": choice("resnet_fm_photos", 93.60, photos=True),
               "mine": choice("my photo run", 90.1, photos=True), "old": choice("cnn_c_report", 90.63)}
    assert photo_model_to_suggest(choices, "best") == "photos"
    assert photo_model_to_suggest(choices, "old") == "photos"
    assert photo_model_to_suggest(choices, "mine") is None  # it saw photos itself
    assert photo_model_to_suggest({"best": choices["best"], "old": choices["old"]}, "best") is None  # none did
    unknown = {"best": choices["best"], "mine": choice("my photo run", None, photos=True)}
    assert photo_model_to_suggest(unknown, "best") == "mine"  # no test figure: still the only one
