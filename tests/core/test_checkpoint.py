import pytest
import torch
from safetensors.torch import save_file

from fmnist_core.formats.checkpoint import CheckpointError, load_checkpoint, load_checkpoint_bytes, read_metadata, save_checkpoint
from fmnist_core.modeling.models import create_model


def test_round_trip_rebuilds_the_model_without_training_code(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn_c", dropout=0.3).eval()
    path = save_checkpoint(model, tmp_path / "run" / "model.safetensors", config={"lr": 0.1}, metrics={"test_accuracy": 91.0})
    loaded = load_checkpoint(tmp_path / "run")  # the folder works as well as the file
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.metadata["model_args"] == {"dropout": 0.3}
    assert loaded.metadata["metrics"]["test_accuracy"] == 91.0
    assert loaded.metadata["classes"][0] == "T-shirt/top"
    assert not list(path.parent.glob(".*.tmp"))  # the temp file was renamed away


def test_missing_and_damaged_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(bad)
    good = save_checkpoint(create_model("cnn_a"), tmp_path / "good.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a Fashion-MNIST Studio checkpoint"):
        read_metadata(path)


def test_weights_that_do_not_fit_the_named_model(tmp_path):
    model = create_model("cnn_c")
    model.model_name = "cnn_a"  # metadata lies about the architecture
    model.build_args = {}
    path = save_checkpoint(model, tmp_path / "liar.safetensors")
    with pytest.raises(CheckpointError, match="do not match model 'cnn_a'"):
        load_checkpoint(path)


def test_nan_weights_are_refused(tmp_path):
    model = create_model("cnn_a")
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    path = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(path)


def test_uploaded_bytes(tmp_path):
    path = save_checkpoint(create_model("cnn_a"), tmp_path / "m.safetensors")
    loaded = load_checkpoint_bytes(path.read_bytes(), "mine.safetensors")
    assert loaded.name == "cnn_a"
    with pytest.raises(CheckpointError, match="mine.safetensors"):
        load_checkpoint_bytes(b"garbage", "mine.safetensors")
    with pytest.raises(CheckpointError, match="MB"):
        load_checkpoint_bytes(b"0" * (51 * 1024 * 1024), "huge.safetensors")


# ---- crafted checkpoints: metadata is checked before anything is allocated ----------------

import subprocess  # noqa: E402
import sys  # noqa: E402

from fmnist_core.formats.checkpoint import inspect_checkpoint  # noqa: E402
from tests.helpers.checkpoints import craft, small_state  # noqa: E402
from tests.helpers.paths import ROOT  # noqa: E402

MEMORY_PROBE = """
import resource, sys
import torch
from fmnist_core.formats.checkpoint import CheckpointError, load_checkpoint
torch.set_num_threads(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(sys.argv[1])
    print("loaded")
except CheckpointError as e:
    print("refused:", e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.parametrize("model, args, words", [
    ("resnet_fm", {"width": 1000}, "width: 1000 is out of range"),  # the 142 KB file that cost 2.5 GB
    ("vgg11", {"width": 256}, "do not match model 'vgg11'"),  # within bounds: 590 MB of weights the file lacks
])
def test_a_small_file_that_names_a_huge_model_fails_fast_in_bounded_memory(tmp_path, model, args, words):
    path = craft(tmp_path / "model.safetensors", model, args, small_state(width=16))
    assert path.stat().st_size < 150_000
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = probe.stdout.strip().splitlines()
    assert lines[0].startswith("refused:") and words in lines[0], probe.stdout + probe.stderr
    assert int(lines[-1]) < 300, f"peak memory grew by {lines[-1]} MB"


@pytest.mark.parametrize("model, args, words", [
    ("resnet_fm", {"width": 100000}, "width: 100000 is out of range; use 4 to 256"),
    ("cnn_c", {"image_size": 0}, "image_size 0 is not one this app trains on (28, 7, 14)"),
    ("cnn_c", {"dropout": 7}, "dropout: 7 is out of range"),
    ("cnn_c", {"width": 16}, "model 'cnn_c' takes no argument 'width'"),
    ("cnn_c", {"__class__": 1}, "takes no argument '__class__'"),
    ("cnn_b", {"softmax_output": "yes"}, "is not on or off"),
    ("fast_cnn", {"width": None}, "argument 'width' is empty"),
    ("nope", {}, "unknown model 'nope'"),
    ("cnn_c", "[]", "'model_args' is list, not dict"),
    ("cnn_c", "{bad json", "damaged metadata"),
])
def test_constructor_arguments_are_held_to_the_configs_bounds(tmp_path, model, args, words):
    path = craft(tmp_path / "model.safetensors", model, args, small_state("cnn_c"))
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert words in str(error.value)
    assert len(str(error.value).splitlines()) == 1


def test_int8_weights_are_refused(tmp_path):
    state = small_state("cnn_c")
    state["classifier.0.weight"] = state["classifier.0.weight"].to(torch.int8)
    path = craft(tmp_path / "int8.safetensors", "cnn_c", {}, state)
    with pytest.raises(CheckpointError, match=r"classifier.0.weight is I8 where the model needs F32"):
        load_checkpoint(path)


def test_missing_extra_and_reshaped_tensors_are_refused(tmp_path):
    state = small_state("cnn_c")
    missing = {k: v for k, v in state.items() if k != "features.0.bias"}
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) missing, first features.0.bias"):
        inspect_checkpoint(craft(tmp_path / "a.safetensors", "cnn_c", {}, missing))
    extra = {**state, "evil": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) the model does not have, first evil"):
        inspect_checkpoint(craft(tmp_path / "b.safetensors", "cnn_c", {}, extra))
    reshaped = {**state, "features.0.bias": torch.zeros(33)}
    with pytest.raises(CheckpointError, match=r"features.0.bias has shape \[33\] where the model needs \[32\]"):
        inspect_checkpoint(craft(tmp_path / "c.safetensors", "cnn_c", {}, reshaped))


def test_a_patch_model_checkpoint_still_loads(tmp_path):
    model = create_model("mlp4", image_size=14, dropout=0.1)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.safetensors"))
    assert loaded.metadata["model_args"] == {"image_size": 14, "dropout": 0.1}
    assert loaded.model(torch.zeros(2, 1, 14, 14)).shape == (2, 10)
