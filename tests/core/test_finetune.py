"""Fine-tuning (`train --from`) and photo sets mixed into training (`train --photos DIR`)."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fmnist_core.analysis.metrics import analyze
from fmnist_core.analysis.model_card import build_card
from fmnist_core.base.files import file_sha256
from fmnist_core.commands.cli import main
from fmnist_core.formats.checkpoint import FORMAT, load_checkpoint
from fmnist_core.images.data import CLASSES, normalize
from fmnist_core.training.finetune import FINETUNE_EPOCHS, FINETUNE_LR_FACTOR, finetune_config
from fmnist_core.training.photo_data import load_photo_data
from fmnist_core.use.scoring import evaluate
from tests.helpers.data import synthetic_images


@pytest.fixture
def tiny_env(tiny_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))


@pytest.fixture
def source(tiny_env, tmp_path, capsys) -> Path:
    """A trained cnn_a run (1 epoch on the tiny data set)."""
    run = tmp_path / "source"
    assert main(["train", "--model", "cnn_a", "--epochs", "1", "--lr", "0.05", "--batch-size", "64", "--threads", "1",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    return run


def photo_folder(root: Path, per_class: int = 2, names=None) -> Path:
    """A tiny ImageFolder set: per_class 56x56 PNGs in each class folder."""
    for label in range(len(CLASSES)):
        folder = root / (names[label] if names else CLASSES[label].replace("/", "_"))
        folder.mkdir(parents=True)
        images = synthetic_images(np.full(per_class, label), seed=label)
        for i, image in enumerate(images):
            Image.fromarray(image).resize((56, 56)).save(folder / f"{i}.png")
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_from_starts_at_the_checkpoints_accuracy_with_its_settings(source, tiny_data, tmp_path, capsys):
    saved = load_checkpoint(source)
    config = finetune_config(source, {"epochs": 1})
    assert (config.model, config.batch_size, config.epochs) == ("cnn_a", 64, 1)
    assert config.lr == pytest.approx(0.05 * FINETUNE_LR_FACTOR) and config.schedule == "cosine"
    assert finetune_config(source, {}).epochs == FINETUNE_EPOCHS

    run = tmp_path / "tuned"
    assert main(["train", "--from", str(source), "--epochs", "1", "--out", str(run), "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = evaluate(saved.model, normalize(tiny_data.test_images), tiny_data.test_labels)["accuracy"]
    assert row["start_test_accuracy"] == pytest.approx(expected)
    assert row["start_test_accuracy"] == pytest.approx(saved.metadata["metrics"]["test_accuracy"])
    stored = json.loads((run / "config.json").read_text())
    assert stored["init_from"] == str(source / "model.safetensors")
    assert stored["extra"]["fine_tuned_from"]["sha256"] == file_sha256(source / "model.safetensors")
    assert json.loads((run / "result.json").read_text())["start_test_accuracy"] == pytest.approx(expected)
    tuned = load_checkpoint(run)
    card = build_card("tuned", tuned.metadata, analyze(tuned.model, tiny_data), tiny_data)
    assert f"- Fine-tuned from `{source / 'model.safetensors'}` (model `cnn_a`, its test accuracy {expected:.2f}%" in card
    assert f"--from {source / 'model.safetensors'}" in card


def test_from_weights_are_the_checkpoints(source, tiny_data):
    """The model fit starts from holds the checkpoint's tensors exactly."""
    from fmnist_core.training.engine import build_model
    from fmnist_core.training.finetune import load_start_weights

    config = finetune_config(source, {})
    model = build_model(config)
    load_start_weights(model, config)
    for name, tensor in load_checkpoint(source).model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_from_refuses_another_architecture_in_one_line(source, tmp_path, capsys):
    assert main(["train", "--from", str(source), "--model", "cnn_c", "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "--model cnn_c" in line and "architecture" in line
    assert not (tmp_path / "run").exists()


def hostile_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    pickled = folder / "pickle.safetensors"
    pickled.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    huge = folder / "huge.safetensors"  # our format, but asks for a model no form could train
    save_file({"w": torch.zeros(1)}, str(huge), metadata={"format": FORMAT, "model": "fast_cnn_v2", "model_args": json.dumps({"width": 10**6})})
    return {"damaged": pickled, "width: 1000000 is out of range": huge, "not found": folder / "missing"}


def test_from_refuses_hostile_or_missing_checkpoints_in_one_line(tiny_env, tmp_path, capsys):
    for words, path in hostile_checkpoints(tmp_path / "bad").items():
        assert main(["train", "--from", str(path), "--out", str(tmp_path / "run")]) == 2
        assert words in one_error_line(capsys)
        assert not (tmp_path / "run").exists()


def test_photos_dir_trains_one_epoch_and_records_the_held_out_accuracy(tiny_env, tmp_path, capsys):
    photos = photo_folder(tmp_path / "photos")
    run = tmp_path / "run"
    assert main(["train", "--model", "cnn_a", "--epochs", "1", "--batch-size", "64", "--threads", "1",
                 "--photos", str(photos), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert 0 <= history[0]["photo_accuracy"] <= 100 and history[0]["photo_loss"] > 0
    assert f"held-out photos {history[0]['photo_accuracy']:.2f}%" in out
    assert json.loads((run / "result.json").read_text())["photo_accuracy"] == history[0]["photo_accuracy"]
    recorded = json.loads((run / "config.json").read_text())["extra"]["photos"]
    data = load_photo_data(str(photos))
    assert recorded == data.record() and recorded["train"] + recorded["heldout"] == 20 and recorded["heldout"] > 0
    # the recorded figure is the saved model's accuracy on the held-out photos, scored again here
    saved = load_checkpoint(run / "model.safetensors").model
    again = evaluate(saved, normalize(data.heldout_images), data.heldout_labels)["accuracy"]
    assert history[0]["photo_accuracy"] == pytest.approx(again, abs=1e-6)


def test_split_is_fixed_by_content_not_names(tmp_path):
    a = load_photo_data(str(photo_folder(tmp_path / "a")))
    b = load_photo_data(str(photo_folder(tmp_path / "b", names=[str(i) for i in range(10)])))  # index-named folders
    assert a.hash == b.hash and sorted(a.heldout_labels.tolist()) == sorted(b.heldout_labels.tolist())
    assert a.heldout_images.shape[1:] == (28, 28) and a.heldout_images.dtype == torch.uint8


@pytest.mark.parametrize("damage, words", [
    (lambda root: shutil.copytree(root / "Bag", root / "Hat"), 'unknown class folder "Hat"'),
    (lambda root: (root / "Bag" / "notes.txt").write_text("x"), "notes.txt: the file is not an image"),
    (lambda root: (root / "Bag" / "9.png").write_text("not a png"), "9.png: the file is not an image"),
    (lambda root: (root / "stray.png").write_bytes(b""), "stray.png is not in a class folder"),
])
def test_a_bad_photo_folder_is_one_line_and_nothing_is_written(tiny_env, tmp_path, capsys, damage, words):
    photos = photo_folder(tmp_path / "photos")
    damage(photos)
    assert main(["train", "--model", "cnn_a", "--photos", str(photos), "--out", str(tmp_path / "run")]) == 2
    assert words in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_empty_or_missing_photo_set_is_one_line(tiny_env, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for ref, words in ((tmp_path / "empty", "holds no photos"), (tmp_path / "nope", "there is no photo set")):
        assert main(["train", "--model", "cnn_a", "--photos", str(ref), "--out", str(tmp_path / "run")]) == 2
        assert words in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_every_batch_is_a_quarter_photos_each_seen_equally_often():
    from fmnist_core.training.engine import PHOTO_BATCH_SHARE, _photo_stream

    labels = torch.arange(14)
    stream = _photo_stream((torch.zeros(14, 1, 28, 28), labels), n=600, batch_size=64, generator=torch.Generator().manual_seed(0))
    assert stream.shape == (10, 21)  # 10 batches of 64 images + 21 photos
    assert 21 / (64 + 21) == pytest.approx(PHOTO_BATCH_SHARE, abs=0.01)
    counts = torch.bincount(stream.flatten(), minlength=14)
    assert counts.max() - counts.min() <= 1


def test_a_run_does_not_continue_on_a_changed_photo_set(tmp_path):
    from fmnist_core.modeling.config import TrainConfig
    from fmnist_core.training.finetune import photos_for_run
    from fmnist_core.training.photo_data import PhotoSetError

    photos = photo_folder(tmp_path / "photos")
    config = TrainConfig(photos=str(photos), extra={"photos": load_photo_data(str(photos)).record()})
    assert photos_for_run(config).hash == config.extra["photos"]["hash"]
    Image.fromarray(synthetic_images(np.array([8]), seed=99)[0]).save(photos / "Bag" / "new.png")
    with pytest.raises(PhotoSetError, match="has changed since this run started"):
        photos_for_run(config)


def test_a_run_trained_on_synthetic_photos_fine_tunes_on_a_photo_set(tiny_env, tmp_path, capsys):
    """The user's photos replace the synthetic ones the checkpoint was trained with: the
    two are not mixed, and fine-tuning must not then refuse the user's set."""
    start = tmp_path / "synthetic"
    assert main(["train", "--model", "cnn_a", "--epochs", "1", "--batch-size", "64", "--threads", "1",
                 "--synthetic-photos", "30", "--out", str(start)]) == 0
    assert json.loads((start / "config.json").read_text())["synthetic_photos"] == 30
    run = tmp_path / "run"
    assert main(["train", "--from", str(start), "--photos", str(photo_folder(tmp_path / "photos")), "--epochs", "1",
                 "--threads", "1", "--out", str(run)]) == 0, capsys.readouterr().err
    saved = json.loads((run / "config.json").read_text())
    assert saved["synthetic_photos"] == 0 and saved["photos"].endswith("photos")
