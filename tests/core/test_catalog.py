"""The catalog (what Predict and Compare list) and the test-set analysis kept beside weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from fmnist_core.analysis.metrics import ANALYSIS_NAME, analyze, cached_analysis
from fmnist_core.base.paths import pretrained_dir
from fmnist_core.formats.checkpoint import load_checkpoint, save_checkpoint
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import create_model
from fmnist_core.store.catalog import best_first, list_checkpoints, list_comparable, trained_on_photos
from fmnist_core.store.run_store import RunStore


def test_identical_checkpoints_are_listed_once(tmp_path):
    shipped = tmp_path / "pretrained"
    shutil.copytree(pretrained_dir() / "cnn_c_report", shipped / "cnn_c_report")
    shutil.copytree(pretrained_dir() / "cnn_c_report", shipped / "cnn_c_copy")  # same file, another folder
    shutil.copytree(pretrained_dir() / "resnet_fm_best", shipped / "resnet_fm_best")
    entries = list_checkpoints(RunStore(tmp_path / "runs"), shipped)
    assert [e.name for e in entries] == ["resnet_fm_best", "cnn_c_copy"]  # most accurate first; the copy's twin left out
    assert len({e.sha256 for e in entries}) == 2


def test_a_listed_checkpoint_is_checked_once_per_file_version(tmp_path, monkeypatch):
    """Issue 23: Predict lists every checkpoint on each rerun, and checking one builds its model
    on the meta device (1.3 s a rerun for 12 checkpoints). Checked again only once rewritten."""
    import fmnist_core.formats.checkpoint as checkpoint

    built = []
    real = checkpoint.create_model
    monkeypatch.setattr(checkpoint, "create_model", lambda *a, **k: built.append(a) or real(*a, **k))
    store = RunStore(tmp_path / "runs")
    torch.manual_seed(0)
    weights = save_checkpoint(create_model("cnn_a"), store.create(TrainConfig(model="cnn_a")) / "model.safetensors")
    assert len(list_checkpoints(store, tmp_path / "none")) == 1 and len(built) == 1
    assert len(list_checkpoints(store, tmp_path / "none")) == 1 and len(built) == 1  # not built again
    weights.write_bytes(b"not a checkpoint")  # rewritten: checked again, and no longer offered
    assert list_checkpoints(store, tmp_path / "none") == [] and len(built) == 1


def test_a_checkpoint_unreadable_for_a_moment_is_listed_again_next_time(tmp_path, monkeypatch):
    """The per-version cache kept a one-off OSError's "not offered" until the file changed or
    the server restarted (the review): a read error is not cached, a damaged file is."""
    from fmnist_core.store import catalog

    store = RunStore(tmp_path / "runs")
    save_checkpoint(create_model("cnn_a"), store.create(TrainConfig(model="cnn_a")) / "model.safetensors")
    real = catalog.inspect_checkpoint
    failing = [True]

    def inspect_once_failing(path):
        if failing.pop() if failing else False:
            raise OSError(5, "Input/output error")
        return real(path)

    monkeypatch.setattr(catalog, "inspect_checkpoint", inspect_once_failing)
    assert list_checkpoints(store, tmp_path / "none") == []
    assert len(list_checkpoints(store, tmp_path / "none")) == 1


def test_a_checkpoint_says_whether_photos_were_mixed_into_its_training(tmp_path):
    """Predict suggests a photo-trained model for uploads and the camera: the flag comes from
    the settings recorded in the checkpoint, photo augmentation alone not counted."""
    store = RunStore(tmp_path / "runs")
    for name, extra in [("plain", {}), ("augmented", {"photo_augment": 0.5}), ("synthetic", {"synthetic_photos": 500}),
                        ("own_set", {"photos": "my-shirts"})]:
        config = TrainConfig(model="cnn_a", name=name, **extra)
        torch.manual_seed(len(name))  # distinct weights: identical files are listed once
        save_checkpoint(create_model("cnn_a"), store.create(config) / "model.safetensors", config.to_dict())
    flags = {e.name: e.trained_on_photos for e in list_checkpoints(store, tmp_path / "none")}
    assert flags == {"plain": False, "augmented": False, "synthetic": True, "own_set": True}
    assert not any(e.trained_on_photos for e in list_checkpoints(RunStore(tmp_path / "empty"), pretrained_dir())
                   if e.name != "resnet_fm_photos")
    # what an older or hand-edited checkpoint may record
    for odd in [None, [], "photos", {"photos": ""}, {"photos": 3}, {"synthetic_photos": True}, {"synthetic_photos": -5},
                {"synthetic_photos": "500"}]:
        assert trained_on_photos(odd) is False


def test_comparable_entries_without_a_run_store(tmp_path):
    entries = list_comparable([], pretrained_dir(), tmp_path)  # no results/ either
    assert sorted(e.key for e in entries) == ["shipped:cnn_c_report", "shipped:resnet_fm_best", "shipped:resnet_fm_photos"]
    assert [e.key for e in best_first(entries)] == ["shipped:resnet_fm_best", "shipped:resnet_fm_photos", "shipped:cnn_c_report"]
    assert all(e.history and e.weights == pretrained_dir() / e.key.removeprefix("shipped:") / "model.safetensors" for e in entries)


def test_analysis_is_kept_beside_the_weights_and_checked(tmp_path, tiny_data):
    torch.manual_seed(0)
    weights = save_checkpoint(create_model("cnn_a"), tmp_path / "run" / "model.safetensors")
    first = cached_analysis(weights, tiny_data)
    cache = weights.with_name(ANALYSIS_NAME)
    assert cache.is_file()
    again = cached_analysis(weights, tiny_data)
    assert again.matrix == first.matrix and np.array_equal(again.predictions, first.predictions)
    assert np.allclose(again.probabilities, first.probabilities, atol=1e-3)  # stored as float16

    torch.manual_seed(1)  # new weights in the same file: the stored analysis no longer applies
    other = create_model("cnn_a")
    save_checkpoint(other, weights)
    fresh = cached_analysis(weights, tiny_data)
    assert fresh.matrix == analyze(other.eval(), tiny_data).matrix

    cache.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")  # a damaged cache is recomputed, not trusted
    assert cached_analysis(weights, tiny_data).matrix == fresh.matrix


def test_a_trained_run_opens_on_compare_without_scoring_the_test_set_again(tmp_path, tiny_data, monkeypatch):
    """Training scores the test set every epoch; the run keeps the last epoch's scores as
    Compare's analysis, so opening a new run there costs no second pass (34 s for resnet_fm)."""
    from fmnist_core.analysis import metrics
    from fmnist_core.training.run_manager import train_run

    store = RunStore(tmp_path / "runs")
    config = TrainConfig(model="cnn_a", optimizer="adam", lr=0.01, batch_size=32, epochs=2, threads=1)
    run_id = store.create(config, run_id="r").name
    assert train_run(store, run_id, config, data=tiny_data)["status"] == "finished"
    weights = store.root / run_id / "model.safetensors"
    expected = analyze(load_checkpoint(weights).model, tiny_data)

    scored = []
    monkeypatch.setattr(metrics, "analyze", lambda *a: scored.append(a) or analyze(*a))
    kept = cached_analysis(weights, tiny_data)
    assert scored == []  # read from the file training wrote
    assert kept.matrix == expected.matrix and np.allclose(kept.probabilities, expected.probabilities, atol=1e-3)
    assert 100 * np.trace(kept.matrix) / len(tiny_data.test_labels) == pytest.approx(store.read(run_id).history[-1]["test_accuracy"])


def test_an_oversized_analysis_cache_is_not_read_whole(tmp_path, tiny_data, bounded_memory):
    """A sparse 8 GB file planted as the cache: read whole it would take 8 GB (here a MemoryError
    under the test's 4 GB cap); only its first 4 MB are looked at, then it is recomputed."""
    torch.manual_seed(0)
    weights = save_checkpoint(create_model("cnn_a"), tmp_path / "run" / "model.safetensors")
    with open(weights.with_name(ANALYSIS_NAME), "wb") as planted:
        planted.truncate(8 * 2**30)
    assert cached_analysis(weights, tiny_data).matrix == analyze(load_checkpoint(weights).model, tiny_data).matrix
