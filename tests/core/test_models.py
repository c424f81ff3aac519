import pytest
import torch

from fmnist_core.modeling.models import count_parameters, create_model, layer_table, list_models, model_info, summary

# Figure 2 of the report: parameter counts and every layer's output shape.
REPORT = {
    "mlp4": (583_010, [[-1, 500], [-1, 500], [-1, 500], [-1, 250], [-1, 250], [-1, 250], [-1, 250], [-1, 250], [-1, 250], [-1, 10]]),
    "mlp_custom": (1_497_710, None),
    "cnn_a": (2_174, [[-1, 4, 28, 28], [-1, 4, 28, 28], [-1, 4, 28, 28], [-1, 4, 14, 14], [-1, 4, 14, 14], [-1, 4, 14, 14], [-1, 4, 14, 14], [-1, 4, 7, 7], [-1, 10]]),
    "cnn_b": (583_830, [[-1, 32, 28, 26], [-1, 32, 28, 26], [-1, 32, 14, 13], [-1, 100], [-1, 100], [-1, 10]]),
    "cnn_c": (35_044, [[-1, 32, 28, 26], [-1, 32, 28, 26], [-1, 32, 14, 13], [-1, 4, 14, 13], [-1, 4, 14, 13], [-1, 4, 14, 13], [-1, 4, 7, 6], [-1, 100], [-1, 100], [-1, 100], [-1, 150], [-1, 150], [-1, 150], [-1, 10]]),
}
CNN_C_LAYERS = ["Conv2d-1", "ReLU-2", "MaxPool2d-3", "Conv2d-4", "BatchNorm2d-5", "ReLU-6", "MaxPool2d-7", "Linear-8",
                "LeakyReLU-9", "Dropout-10", "Linear-11", "LeakyReLU-12", "Dropout-13", "Linear-14"]


@pytest.mark.parametrize("name", list(REPORT))
def test_report_models_match_figure_2(name):
    params, shapes = REPORT[name]
    model = create_model(name)
    assert count_parameters(model) == params
    if shapes:
        assert [row[1] for row in layer_table(model)] == shapes


def test_cnn_c_table_reads_like_the_report():
    rows = layer_table(create_model("cnn_c"))
    assert [r[0] for r in rows] == CNN_C_LAYERS
    assert [r[2] for r in rows if r[2]] == [320, 1156, 8, 16900, 15150, 1510]
    text = summary(create_model("cnn_c"))
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text and "35,044" in text


def test_cnn_b_softmax_quirk_is_an_option():
    assert layer_table(create_model("cnn_b", softmax_output=True))[-1][0] == "Softmax-7"
    assert layer_table(create_model("cnn_b"))[-1][0] == "Linear-6"


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(4, 1, 28, 28)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("name", ["mlp4", "mlp_custom", "cnn_a", "cnn_b", "cnn_c", "fast_cnn", "fast_cnn_v2", "air_cnn"])
@pytest.mark.parametrize("patch", [7, 14])
def test_models_accept_tiles(name, patch):
    model = create_model(name, image_size=patch)
    assert model(torch.randn(3, 1, patch, patch)).shape == (3, 10)


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError, match="cnn_c"):
        create_model("resnet9000")


def test_build_args_are_kept_for_checkpoints():
    model = create_model("cnn_c", dropout=0.3)
    assert model.model_name == "cnn_c" and model.build_args == {"dropout": 0.3}


@pytest.mark.parametrize("name, default", [("vgg11", 64), ("fast_cnn", 32), ("fast_cnn_v2", 32), ("air_cnn", 32), ("resnet_fm", 32)])
def test_width_is_the_first_conv_layers_channels(name, default):
    """One meaning of `width` for every model that has it (the Train page has one field)."""
    first_conv = lambda model: next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # noqa: E731
    assert first_conv(create_model(name)).out_channels == default
    narrow = create_model(name, width=16)
    assert first_conv(narrow).out_channels == 16
    assert count_parameters(narrow) < count_parameters(create_model(name))
    narrow(torch.randn(2, 1, 28, 28)).sum().backward()


@pytest.mark.parametrize("name, recipe, width", [
    ("fast_cnn", "fast_v1", 16), ("fast_cnn", None, 32), ("fast_cnn_v2", "fast", 16), ("air_cnn", "balanced", 16),
])
def test_model_descriptions_state_their_real_parameter_counts(name, recipe, width):
    """Shown beside the counted parameters on the Train page, so the two must agree."""
    from fmnist_core.modeling.recipes import RECIPES

    where = f"{recipe}'s width {width}" if recipe else f"its default width {width}"
    assert f"{count_parameters(create_model(name, width=width)):,} params at {where}" in model_info(name).description
    if recipe:
        assert (RECIPES[recipe]["model"], RECIPES[recipe]["width"]) == (name, width)
    assert "~" not in model_info(name).description


@pytest.mark.parametrize("name, normalised_shapes", [
    ("fast_cnn_v2", [[-1, 16, 14, 14], [-1, 32, 7, 7]]),
    ("air_cnn", [[-1, 16, 28, 28], [-1, 32, 14, 14], [-1, 32, 14, 14], [-1, 64, 7, 7], [-1, 64, 7, 7]]),
])
def test_models_in_airbench_layout_pool_before_batchnorm(name, normalised_shapes):
    """Their speed: after each max-pool, BatchNorm and ReLU see the pooled map, never the 28x28
    one the conv before it made."""
    rows = layer_table(create_model(name, width=16))
    assert [shape for layer, shape, _ in rows if layer.startswith("BatchNorm2d")] == normalised_shapes
    assert [shape for layer, shape, _ in rows if layer.startswith("ReLU")] == normalised_shapes
    pooled = [i for i, (layer, _, _) in enumerate(rows) if layer.startswith("MaxPool2d")]
    assert pooled and all(rows[i + 1][0].startswith("BatchNorm2d") for i in pooled)
