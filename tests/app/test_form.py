"""The Train form as a link: every setting survives the round trip through the URL."""

from __future__ import annotations

import pytest

from fmnist_core.modeling.config import DEFAULTS, SETTINGS, config_problems
from fmnist_core.modeling.recipes import RECIPES
from ui.form import config_summary, form_from_query, query_from_form

NON_DEFAULT = {"model": "vgg11", "optimizer": "adamw", "lr": 0.00123, "momentum": 0.5, "nesterov": True, "weight_decay": 1e-5,
               "batch_size": 4096, "epochs": 7, "schedule": "onecycle", "label_smoothing": 0.15, "dropout": 0.3, "init": "he_normal",
               "patch": 14, "augment": True, "photo_augment": 0.75, "synthetic_photos": 2500, "tta": True, "seed": 2**31 - 1, "device": "cpu", "threads": 3, "precision": "bf16",
               "channels_last": True, "softmax_output": False, "width": 48, "validation": 5000, "ema": 0.999,
               "name": "a name: with *stars*, & [brackets]"}


def test_every_setting_has_a_round_trip_case():
    assert set(NON_DEFAULT) == set(SETTINGS)


@pytest.mark.parametrize("name", [n for n in SETTINGS if NON_DEFAULT[n] != DEFAULTS[n]])
def test_a_setting_survives_the_link(name):
    values = {**DEFAULTS, name: NON_DEFAULT[name]}
    query = query_from_form(values)
    assert list(query) == [name]  # only what differs from the defaults
    parsed, problems = form_from_query(query)
    assert problems == {} and parsed == {name: NON_DEFAULT[name]}


def test_a_whole_recipe_survives_the_link_and_is_valid():
    for recipe in RECIPES:
        values = {**DEFAULTS, **RECIPES[recipe]}
        parsed, problems = form_from_query(query_from_form(values))
        assert problems == {} and {**DEFAULTS, **parsed} == values and config_problems(values) == {}


def test_summary_names_every_setting_that_will_differ_from_the_defaults():
    values = {**DEFAULTS, **RECIPES["fast_v1"]}
    line = config_summary(values)
    assert line == ("fast_cnn width 16 · sgd lr 0.05, momentum 0.9 Nesterov, weight decay 0.0005 · batch 64 · 2 epochs · "
                    "lr schedule onecycle · label smoothing 0.1 · precision auto · channels last · seed 0")
    ignored = config_summary({**DEFAULTS, "dropout": 0.5, "width": 64, "model": "cnn_a"})
    assert "dropout" not in ignored and "width" not in ignored  # the model ignores them: they will not train


def test_a_sweep_trials_train_link_opens_the_form_on_its_settings():
    """The Sweep page's "open in Train" link is encoded by the form's own rule (query_from_form)."""
    from urllib.parse import parse_qsl, urlsplit

    from fmnist_core.modeling.recipes import recipe_config
    from ui.sweeps import NOT_LINKED, train_link

    trial = {**recipe_config("fast").to_dict(), "lr": 0.0375, "nesterov": False, "threads": 1, "name": "s: lr=0.0375"}
    values, problems = form_from_query(dict(parse_qsl(urlsplit(train_link(trial)).query)))
    assert problems == {}
    assert {k: v for k, v in {**DEFAULTS, **values}.items() if k not in NOT_LINKED} == \
        {k: v for k, v in trial.items() if k in DEFAULTS and k not in NOT_LINKED}
