import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fmnist_core.images.data import CLASSES, normalize
from fmnist_core.modeling.models import create_model
from fmnist_core.use.inference import (
    MAX_IMAGE_BYTES,
    WORKING_SIDE,
    ImageError,
    open_image,
    predict_images,
    read_image_file,
    to_8bit,
    to_model_input,
)
from fmnist_core.use.scoring import predict_dataset


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
        open_image(b"0" * (MAX_IMAGE_BYTES + 1))
    with pytest.raises(ImageError, match="the limit for images is 1 KB"):
        open_image(b"x" * 2000, max_bytes=1024)  # the app passes Streamlit's own cap


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels, built row by row so that the
    test never holds the decoded image: 30000x30000 (900 MP) compresses to ~110 KB."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12000, 30000])
def test_decompression_bomb_is_refused_in_our_words(side):
    bomb = png_bomb(side, side)
    assert len(bomb) < 150_000
    with pytest.raises(ImageError) as refused:
        open_image(bomb)
    message = str(refused.value)
    assert "megapixels" in message and "decompression bomb" in message
    if side == 12000:  # refused by our header check, which names the size
        assert "12,000x12,000 pixels" in message
    assert "DOS attack" not in message and "exceeds limit" not in message  # Pillow's own wording


def test_phone_photo_is_scaled_down_while_decoding():
    """A 9000x9000 JPEG (81 MP) is accepted and decoded at 1/8 scale: quick, small."""
    import time

    photo = Image.new("L", (9000, 9000), 250)
    ImageDraw.Draw(photo).rectangle([3000, 1500, 6000, 7500], fill=25)  # a dark dress-ish block on white
    data = png_bytes(photo, "JPEG")
    del photo
    start = time.perf_counter()
    image = open_image(data)
    seconds = time.perf_counter() - start
    assert image.size == (1125, 1125)  # 9000 / 8: JPEG draft mode, not a full decode
    assert seconds < 2.0
    assert_fashion_mnist_like(to_model_input(image))


def test_large_png_is_reduced_after_decoding():
    image = open_image(png_bytes(Image.new("RGB", (5000, 3000), "white")))
    assert image.size == (1250, 750)  # reduce(4): longest side from WORKING_SIDE to twice that
    assert WORKING_SIDE <= max(image.size) < 2 * WORKING_SIDE


def dark_item_on_light(values: np.ndarray, background, item) -> np.ndarray:
    """(300, 200) array of `background` with a (200, 100) block of `item` in the middle."""
    array = np.full((300, 200), background, dtype=values.dtype)
    array[50:250, 50:150] = item
    return array


HIGH_DEPTH = [  # (mode after Image.fromarray / reading, array dtype, background, item)
    ("I;16", np.uint16, 60000, 1000),
    ("I;16B", np.dtype(">u2"), 60000, 1000),
    ("I;16", np.uint16, 4000, 300),  # a 12-bit sensor's range inside 16 bits
    ("I", np.int32, 3_000_000, -2_000_000),
    ("F", np.float32, 1.0, 0.1),  # a 0-1 float image: Pillow's convert would make it black
    ("F", np.float32, 900.0, -300.0),
]


@pytest.mark.parametrize("mode, dtype, background, item", HIGH_DEPTH, ids=[f"{m}-{b}" for m, _, b, _ in HIGH_DEPTH])
def test_high_bit_depth_images_are_scaled_by_their_range(mode, dtype, background, item):
    image = Image.fromarray(dark_item_on_light(np.zeros(0, dtype), background, item))
    assert image.mode == mode
    gray = np.asarray(to_8bit(image))
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255  # stretched, not clipped
    assert gray[0, 0] == 255 and gray[150, 100] == 0
    x = to_model_input(image)
    assert_fashion_mnist_like(x)
    assert x[14, 14] > 200


@pytest.mark.parametrize("fmt, dtype", [("PNG", np.uint16), ("TIFF", np.dtype(">u2")), ("TIFF", np.float32), ("TIFF", np.int32)])
def test_high_bit_depth_files_open_as_8bit(fmt, dtype):
    """16-bit PNG and TIFF, float TIFF, 32-bit TIFF: read, scaled, and shown as 8-bit."""
    highest = {np.float32: 0.75}.get(dtype, 40000)
    array = dark_item_on_light(np.zeros(0, dtype), highest, highest / 20)
    image = open_image(png_bytes(Image.fromarray(array), fmt))
    assert image.mode == "L"
    assert np.asarray(image)[0, 0] == 255 and np.asarray(image)[150, 100] == 0
    png_bytes(image, "JPEG")  # the page's preview encodes it: must not raise
    assert_fashion_mnist_like(to_model_input(image))


def dark_item_in_mode(mode: str) -> Image.Image:
    """A dark block on a light background, in any 8-bit Pillow mode."""
    gray = Image.new("L", (120, 160), 245)
    ImageDraw.Draw(gray).rectangle([30, 20, 90, 140], fill=10)
    if mode == "1":
        return gray.convert("1", dither=Image.Dither.NONE)
    if mode == "LAB":  # Pillow converts nothing to LAB; build it from its lightness channel
        neutral = Image.new("L", gray.size, 128)
        return Image.merge("LAB", (gray, neutral, neutral))
    if mode in ("P", "PA"):  # an adaptive palette keeps the two greys (the web palette dithers them)
        return gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).convert(mode)
    if mode in ("L", "LA", "La"):
        return gray.convert("LA").convert(mode)
    return gray.convert("RGB").convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"])
def test_every_8bit_mode_becomes_gray(mode):
    image = dark_item_in_mode(mode)
    assert image.mode == mode
    assert to_8bit(image).mode in ("L", "LA", "RGB", "RGBA")
    x = to_model_input(image)
    assert_fashion_mnist_like(x)
    assert x[14, 14] > 200


def test_read_image_file_is_bounded(tmp_path):
    """/dev/zero is refused after max_bytes + 1 bytes, not read until memory runs out."""
    with pytest.raises(ImageError, match="larger than the 1 MB limit"):
        read_image_file("/dev/zero", max_bytes=2**20)
    with pytest.raises(ImageError, match="folder"):
        read_image_file(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        read_image_file(tmp_path / "missing.png")
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="pipe"):
        read_image_file(fifo)  # opening it would block forever
    good = tmp_path / "ok.png"
    good.write_bytes(png_bytes(Image.new("L", (8, 8))))
    assert read_image_file(good) == good.read_bytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
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
    model_input = to_model_input(np.pad(np.full((10, 10), 255, np.uint8), 9))
    [single] = predict_images(model, [model_input])
    assert model_input.shape == (28, 28) and model_input.max() == 255
    assert single.label in CLASSES


SIZES = [(1, 1), (1, 700), (700, 1), (3, 10_000), (10_000, 3), (28, 28), (2_100, 1_000)]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "I", "F"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_any_size_and_mode_gives_a_model_input_or_one_clear_refusal(size, mode):
    """Every shape (1 px, a 1 px line, 10000:3 strips) and mode either becomes a 28x28
    input or is refused as blank: never another exception."""
    rng = np.random.default_rng(size[0] * 31 + size[1])
    array = rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    image = Image.fromarray(array).convert(mode) if mode != "I;16" else Image.fromarray(array.astype(np.uint16) * 257)
    fmt = "TIFF" if mode in ("I", "F", "I;16") else "PNG"
    opened = open_image(png_bytes(image, fmt))
    assert opened.mode in ("L", "LA", "RGB", "RGBA") and max(opened.size) < 2 * WORKING_SIDE
    try:
        x = to_model_input(opened)
    except ImageError as e:
        assert "blank" in str(e)
    else:
        assert x.shape == (28, 28) and x.dtype == np.uint8
