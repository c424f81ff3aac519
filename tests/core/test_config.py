import pytest

from fmnist_core.modeling.config import ConfigError, TrainConfig


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"model": "nope"}, "model", "cnn_c"),
        ({"lr": 0.0}, "lr", "(0.0, 10.0]"),
        ({"lr": -1e-3}, "lr", "out of range"),
        ({"lr": float("nan")}, "lr", "not a number"),
        ({"batch_size": 0}, "batch_size", "1 to 8192"),
        ({"batch_size": 3.5}, "batch_size", "whole number"),
        ({"epochs": 100000}, "epochs", "1 to 200"),
        ({"patch": 5}, "patch", "7 or 14"),
        ({"optimizer": "lbfgs"}, "optimizer", "sgd"),
        ({"momentum": 1.5}, "momentum", "out of range"),
        ({"dropout": 1.0}, "dropout", "out of range"),
        ({"init": "zeros"}, "init", "he_normal"),
        ({"optimizer": "adam", "nesterov": True}, "nesterov", "sgd"),
        ({"model": "cnn_c", "softmax_output": True}, "softmax_output", "cnn_b"),
        ({"label_smoothing": 0.9}, "label_smoothing", "out of range"),
        ({"precision": "fp16"}, "precision", "bf16"),
    ],
)
def test_invalid_values_name_the_field_and_the_range(overrides, field, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**overrides).validate()
    assert info.value.field == field
    assert words in info.value.message


def test_defaults_are_valid_and_round_trip():
    config = TrainConfig(model="mlp4", dropout=0.3, patch=7).validate()
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config
    assert again.model_kwargs() == {"dropout": 0.3, "image_size": 7}


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"model": "cnn_c", "learning_rate": 0.1})


def test_dropout_only_reaches_models_that_have_it():
    assert TrainConfig(model="cnn_a", dropout=0.5).model_kwargs() == {}
    assert TrainConfig(model="cnn_b", softmax_output=True).model_kwargs() == {"softmax_output": True}


def test_every_recipe_is_a_valid_config():
    from fmnist_core.modeling.recipes import DESCRIPTIONS, OUR_RECIPES, PREVIOUS_RECIPES, RECIPES, REPLACES, recipe_config

    for name in RECIPES:
        config = recipe_config(name).validate()
        assert config.name == name
    assert set(DESCRIPTIONS) == set(OUR_RECIPES) | set(PREVIOUS_RECIPES)
    assert set(REPLACES) <= set(OUR_RECIPES) and set(REPLACES.values()) == set(PREVIOUS_RECIPES)
    assert recipe_config("report_cnn_c", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="fast"):
        recipe_config("quickest")


def test_a_renamed_recipe_names_its_new_name():
    """`best` was not (accurate passed it): renamed resnet_12ep, and the old name says so in one
    line on the command line rather than a list of every recipe."""
    from fmnist_core.modeling.recipes import RECIPES, RENAMED, recipe_config
    from tests.helpers.cli import run_main

    assert "best" not in RECIPES and RENAMED["best"] in RECIPES
    with pytest.raises(ValueError, match="'best' is now called 'resnet_12ep'"):
        recipe_config("best")
    result = run_main("train", "--recipe", "best", "--epochs", "1")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == ["error: recipe 'best' is now called 'resnet_12ep'"]


@pytest.mark.parametrize("flags, expected", [({"avx2", "fma"}, "fp32"), ({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16")])
def test_our_recipes_train_in_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, flags, expected):
    """Emulated bf16 made `fast` ~10x slower on an AVX2-only CPU (470.8 against 44.9 ms a batch)."""
    import torch

    from fmnist_core.base import hardware
    from fmnist_core.modeling.recipes import recipe_config
    from fmnist_core.training import engine

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    for recipe in ("fast", "balanced", "accurate", "photo"):  # `best` is fp32 throughout
        config = recipe_config(recipe)
        assert config.resolved_precision("cpu") == expected, recipe
        with engine.autocast(config, torch.device("cpu")):
            assert torch.is_autocast_enabled("cpu") == (expected == "bf16"), recipe
    # an explicit choice is the user's: kept whatever the hardware
    assert TrainConfig(precision="bf16").resolved_precision("cpu") == "bf16"
    assert TrainConfig(precision="fp32").resolved_precision("cpu") == "fp32"
