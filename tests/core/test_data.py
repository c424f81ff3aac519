import gzip

import numpy as np
import pytest
import torch

from fmnist_core.base import paths
from fmnist_core.images import data as D
from tests.helpers.data import make_idx_dir, write_idx


def test_read_idx_round_trip_gz_and_raw(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for compress in (True, False):
        path = write_idx(tmp_path / f"x{compress}", array, compress=compress)
        assert np.array_equal(D.read_idx(path), array)


def test_read_idx_rejects_bad_header_and_truncation(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab"))  # float type code
    with pytest.raises(D.DataError, match="bad header"):
        D.read_idx(bad)
    path = write_idx(tmp_path / "short", np.zeros((4, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(path)


def test_data_dir_order_and_missing_message(tmp_path, monkeypatch):
    folder = make_idx_dir(tmp_path / "mine", 20, 10)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(folder))
    assert D.find_data_dir() == folder
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("FMNIST_HOME", str(tmp_path))
    monkeypatch.setattr(paths, "DEBIAN_DATA_DIR", tmp_path / "nowhere")
    with pytest.raises(D.DataError, match="apt-get install dataset-fashion-mnist"):
        D.find_data_dir()


def test_a_given_folder_missing_a_file_is_one_clear_error(tmp_path):
    folder = make_idx_dir(tmp_path / "partial", 20, 10)
    (folder / (D.FILES["test_labels"] + ".gz")).unlink()
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte"):
        D.load_fashion_mnist(folder)


def test_tiny_data_loads_with_shapes(tiny_data):
    assert tiny_data.train_images.shape == (600, 28, 28) and tiny_data.train_images.dtype == torch.uint8
    assert tiny_data.test_labels.shape == (200,) and tiny_data.test_labels.dtype == torch.int64


def test_real_data_is_the_official_set(real_data):
    assert real_data.train_images.shape == (60000, 28, 28)
    assert real_data.test_images.shape == (10000, 28, 28)
    assert D.class_counts(real_data.train_labels) == [6000] * 10
    assert D.class_counts(real_data.test_labels) == [1000] * 10
    pixels = real_data.train_images.float() / 255
    assert pixels.mean().item() == pytest.approx(D.MEAN, abs=5e-4)
    assert pixels.std().item() == pytest.approx(D.STD, abs=5e-4)
    assert D.load_fashion_mnist() is real_data  # read once per process


def test_normalize_shape_and_scale():
    x = D.normalize(torch.full((3, 28, 28), 255, dtype=torch.uint8))
    assert x.shape == (3, 1, 28, 28)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - D.MEAN) / D.STD)


def test_patches_tile_in_order():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    tiles = D.to_patches(x, 7)
    assert tiles.shape == (2 * 16, 1, 7, 7)
    assert torch.equal(tiles[0, 0], x[0, 0, :7, :7])
    assert torch.equal(tiles[1, 0], x[0, 0, :7, 7:14])
    assert torch.equal(tiles[16, 0], x[1, 0, :7, :7])
    assert D.tiles_per_image(14) == 4 and D.tiles_per_image(0) == 1


def test_augment_flips_and_shifts_only():
    x = D.normalize(torch.randint(0, 255, (64, 28, 28), dtype=torch.uint8))
    out = D.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    background = -D.MEAN / D.STD
    for i in range(64):
        # every output image is the input, maybe mirrored, shifted by <= 2 px with background fill
        found = False
        for candidate in (x[i, 0], x[i, 0].flip(-1)):
            padded = torch.nn.functional.pad(candidate, (2, 2, 2, 2), value=background)
            for dy in range(5):
                for dx in range(5):
                    if torch.equal(padded[dy : dy + 28, dx : dx + 28], out[i, 0]):
                        found = True
        assert found
    again = D.augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, x)


def test_example_grid_rows_are_classes(tiny_data):
    grid = D.example_grid(tiny_data.test_images, tiny_data.test_labels, per_class=3)
    assert grid.shape == (280, 84)
    first = np.flatnonzero(tiny_data.test_labels.numpy() == 0)
    assert any(np.array_equal(grid[:28, :28], tiny_data.test_images[i].numpy()) for i in first)


def test_a_random_test_example_is_of_the_class_asked(tiny_data):
    """Predict's "Random test image": an index of the class asked for, the same for a seed."""
    for label in range(10):
        index = tiny_data.random_test_index(label, np.random.default_rng(label))
        image, got = tiny_data.test_item(index)
        assert got == label and image.shape == (28, 28) and image.dtype == np.uint8
        assert index == tiny_data.random_test_index(label, np.random.default_rng(label))
