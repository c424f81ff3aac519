import pytest
import torch
from safetensors.torch import save_file

from fmnist_core.checkpoint import CheckpointError, load_checkpoint, load_checkpoint_bytes, read_metadata, save_checkpoint
from fmnist_core.models import create_model


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
