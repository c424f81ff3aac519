import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fmnist_core.data import CLASSES, normalize
from fmnist_core.inference import MAX_UPLOAD_BYTES, ImageError, classify, open_image, predict_images, to_model_input
from fmnist_core.models import create_model
from fmnist_core.scoring import predict_dataset


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def assert_fashion_mnist_like(x: np.ndarray):
    """Light item on black, touching the frame's centre, filling its longest side."""
    assert x.shape == (28, 28) and x.dtype == np.uint8
    assert x.max() == 255
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    assert np.median(border) < 30  # dark background
    rows, cols = np.flatnonzero(x.max(1) > 40), np.flatnonzero(x.max(0) > 40)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) >= 24  # scaled up to fill the frame
    centre_r, centre_c = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    assert abs(centre_r - 13.5) <= 1.5 and abs(centre_c - 13.5) <= 1.5


def test_drawing_on_black():
    canvas = Image.new("RGB", (280, 280), "black")
    ImageDraw.Draw(canvas).rectangle([90, 40, 190, 250], fill="white")  # a trouser-ish block
    x = to_model_input(canvas)
    assert_fashion_mnist_like(x)
    assert x[14, 14] > 200


def test_dark_item_photographed_on_white_is_inverted():
    photo = Image.new("RGB", (600, 400), (250, 250, 250))
    ImageDraw.Draw(photo).ellipse([150, 100, 450, 300], fill=(30, 30, 40))  # a dark shoe-ish blob
    x = to_model_input(photo)
    assert_fashion_mnist_like(x)
    assert x[14, 14] > 200 and x[0, 0] < 10


def test_off_centre_item_in_a_large_image():
    big = np.zeros((1000, 1500), np.uint8)
    big[50:250, 1200:1450] = 200  # top-right corner
    x = to_model_input(big)
    assert_fashion_mnist_like(x)


def test_rgba_with_transparency_is_treated_as_on_white():
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))  # fully transparent
    ImageDraw.Draw(image).rectangle([100, 50, 200, 250], fill=(20, 20, 20, 255))
    x = to_model_input(image)
    assert_fashion_mnist_like(x)


def test_blank_input_is_refused():
    with pytest.raises(ImageError, match="blank"):
        to_model_input(np.zeros((280, 280, 3), np.uint8))


def test_real_test_images_upscaled_come_back(real_data):
    """A 28x28 test image blown up to 280x280 must come back as (nearly) itself."""
    correlations = []
    for original in real_data.test_images[:200].numpy():
        big = Image.fromarray(original).resize((280, 280), Image.Resampling.BICUBIC)
        x = to_model_input(big)
        correlations.append(np.corrcoef(x.ravel().astype(float), original.ravel().astype(float))[0, 1])
    assert np.mean(correlations) > 0.94 and min(correlations) > 0.8


def test_open_image_refuses_bad_files():
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"this is a text file, not a picture")
    good = png_bytes(Image.new("RGB", (64, 64), "white"))
    with pytest.raises(ImageError, match="damaged|truncated"):
        open_image(good[: len(good) // 2])
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    with pytest.raises(ImageError, match="limit"):
        open_image(b"0" * (MAX_UPLOAD_BYTES + 1))


def test_decompression_bomb_is_refused():
    bomb = png_bytes(Image.new("1", (12000, 12000)))  # 144 MP that compresses to a few KB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="megapixels|too large"):
        open_image(bomb)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_common_formats_open(fmt):
    image = open_image(png_bytes(Image.new("RGB", (50, 40), "red"), fmt))
    assert image.size == (50, 40)


def test_predict_gives_probabilities_for_each_image():
    torch.manual_seed(0)
    model = create_model("cnn_c").eval()
    inputs = [np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)]
    predictions = predict_images(model, inputs)
    assert len(predictions) == 2
    for p in predictions:
        assert sum(p.probabilities) == pytest.approx(1.0, abs=1e-5)
        assert p.top[0] == (p.label, p.probability) and len(p.top) == 3
    expected = predict_dataset(model, normalize(torch.from_numpy(np.stack(inputs))))
    assert predictions[1].probabilities == pytest.approx(expected[1].tolist(), abs=1e-6)
    model_input, single = classify(model, np.pad(np.full((10, 10), 255, np.uint8), 9))
    assert model_input.shape == (28, 28) and model_input.max() == 255
    assert single.label in CLASSES
