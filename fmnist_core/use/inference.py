"""Turn drawings and photos into Fashion-MNIST-like inputs, and predict.

Fashion-MNIST images are light items on a black background, trimmed to the item and
scaled so its longest side fills the frame, centred. `to_model_input` does the same
to anything a user brings: one function, used by the app and by the CLI.
"""

from __future__ import annotations

import io
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fmnist_core.base.errors import UserError
from fmnist_core.images.data import CLASSES, normalize
from fmnist_core.images.photo import find_item
from fmnist_core.use.scoring import class_probabilities

MAX_IMAGE_BYTES = 50 * 1024 * 1024  # the CLI's cap; the app passes Streamlit's server.maxUploadSize
# Decoded size caps, checked from the header before any pixel is decoded. A JPEG is
# decoded at 1/2, 1/4 or 1/8 scale (Image.draft), so phone photos of 48-200 MP cost a
# few MB; every other format is decoded whole, so its cap is lower.
MAX_JPEG_PIXELS = 256_000_000  # 200 MP phone cameras, with room to spare
MAX_DECODED_PIXELS = 64_000_000  # PNG, WebP, BMP, GIF, TIFF: 8000x8000
WORKING_SIDE = 1024  # images are scaled down to about this before preprocessing; plenty for 28x28
FIT_SIZE = 28  # longest side of the item in the 28x28 frame (measured: see README, preprocessing)
BLANK_MESSAGE = "nothing to classify: the image is blank, or no item stands out from its background (draw or photograph one item)"

# Pillow's own bomb check (in Image.open, before our header check can run) would refuse
# any image over ~179 MP, phone photos included. Our caps above are stricter per format
# and are checked right after the header is read, so Pillow's limit is raised to ours.
Image.MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS

FORMATS_HINT = "PNG, JPEG, WebP, BMP, GIF or TIFF"
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff")  # what an upload field accepts


class ImageError(UserError):
    """The input is not a usable image; the message says why, for the user."""


@dataclass
class Prediction:
    label: str
    probability: float
    probabilities: list[float]  # one per class, in CLASSES order
    top: list[tuple[str, float]]
    milliseconds: float


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def read_image_file(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A file's bytes, read with a bound: at most max_bytes + 1 are ever read, so a huge
    file or a device (/dev/zero) fails fast instead of filling memory."""
    path = Path(path)
    try:
        kind = path.stat().st_mode
    except OSError as e:
        raise ImageError(f"cannot read it ({(e.strerror or str(e)).lower()})") from e
    if stat.S_ISDIR(kind):
        raise ImageError("is a folder, not an image file")
    if stat.S_ISFIFO(kind) or stat.S_ISSOCK(kind):
        raise ImageError("is a pipe or socket, not an image file")  # opening a FIFO would block
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ImageError(f"cannot read it ({e.strerror.lower() if e.strerror else e})") from e
    if len(data) > max_bytes:
        raise ImageError(f"the file is larger than the {_megabytes(max_bytes)} limit for images")
    return data


def open_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> Image.Image:
    """Decode an uploaded image safely into an 8-bit image (L, LA, RGB or RGBA) whose
    longest side is about WORKING_SIDE or less.

    Size-capped; decompression bombs refused from the header, before decoding; JPEGs
    decoded at reduced scale; first frame of an animation; EXIF orientation applied;
    16-bit, 32-bit and float images scaled to 8 bits by their real range."""
    if len(data) == 0:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data) / 2**20:.1f} MB; the limit for images is {_megabytes(max_bytes)}")
    try:
        image: Image.Image = Image.open(io.BytesIO(data))  # reads the header only
        _check_pixels(image.format, image.width, image.height)
        image.seek(0)  # first frame of an animation
        if image.format == "JPEG":
            image.draft(None, (WORKING_SIDE, WORKING_SIDE))  # decode at the smallest scale >= this
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _shrink(image)
        return to_8bit(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's check in Image.open: past twice our largest cap
        raise ImageError(_too_many_pixels(f"over {2 * MAX_JPEG_PIXELS // 1_000_000:,} megapixels")) from e
    except UnidentifiedImageError as e:
        raise ImageError(f"the file is not an image the Studio can read (use {FORMATS_HINT})") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError("the image is damaged or cut short; export it again and retry") from e


def _check_pixels(fmt: str | None, width: int, height: int) -> None:
    """Refuse from the header what would take too much memory to decode."""
    limit = MAX_JPEG_PIXELS if fmt == "JPEG" else MAX_DECODED_PIXELS
    if width * height > limit:
        raise ImageError(_too_many_pixels(f"{width:,}x{height:,} pixels ({width * height / 1e6:,.0f} megapixels)"))


def _too_many_pixels(size: str) -> str:
    return (f"the image is {size}; the Studio accepts JPEG photos up to {MAX_JPEG_PIXELS // 1_000_000} megapixels and "
            f"other formats up to {MAX_DECODED_PIXELS // 1_000_000} (larger ones are refused as possible decompression bombs)")


def _shrink(image: Image.Image) -> Image.Image:
    """Scale down by an integer factor (Image.reduce, a box filter) to about WORKING_SIDE."""
    factor = max(image.size) // WORKING_SIDE
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # exact; reduce works on I, not on I;16
    elif image.mode not in REDUCIBLE_MODES:
        image = to_8bit(image)
    return image.reduce(factor)


REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB or RGBA.

    16-bit (I;16, I;16B, ...), 32-bit integer (I) and float (F) images are stretched from
    their darkest to their brightest finite value: Pillow's own convert("L") clips them at
    255, which turns a 16-bit photo white and a 0-1 float image black."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image).astype(np.float32)  # (H, W)
        finite = np.isfinite(values)
        if not finite.any():
            return Image.new("L", image.size)
        low, high = float(values[finite].min()), float(values[finite].max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        scaled[~finite] = 0.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return image.convert("L")
    if mode == "La":
        return image.convert("LA")  # un-premultiplies the alpha
    if mode in ("P", "PA", "RGBa"):
        return image.convert("RGBA")  # keeps a palette's transparency; un-premultiplies
    if mode == "LAB":
        return image.getchannel("L")  # Pillow has no LAB -> RGB; lightness is what we need
    return image.convert("RGB")  # CMYK, YCbCr, HSV, RGBX


def to_model_input(image: Image.Image | np.ndarray, fit_size: int = FIT_SIZE) -> np.ndarray:
    """Any image -> uint8 (28, 28), light item on black, cropped, scaled, centred.

    A photo's item is found against its surface's light and texture (fmnist_core.images.photo;
    `find_item` also gives the mask and what it is unsure about). Raises ImageError when
    nothing stands out from the background (an empty canvas, an empty table)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    cut = find_item(to_8bit(image), fit_size)
    if cut.model_input is None:
        raise ImageError(BLANK_MESSAGE)
    return cut.model_input


def predict_images(model: torch.nn.Module, images: list[np.ndarray], top_k: int = 3) -> list[Prediction]:
    """Predict uint8 (28, 28) model inputs; one Prediction each."""
    if not images:
        return []
    batch = normalize(torch.from_numpy(np.stack(images)))  # (B, 1, 28, 28)
    device = next(model.parameters()).device
    model.eval()
    start = time.perf_counter()
    probs = class_probabilities(model, batch.to(device)).float().cpu()
    ms = (time.perf_counter() - start) * 1000 / len(images)
    out = []
    for row in probs:
        values = row.tolist()
        order = sorted(range(len(CLASSES)), key=lambda i: -values[i])
        out.append(Prediction(CLASSES[order[0]], values[order[0]], values, [(CLASSES[i], values[i]) for i in order[:top_k]], ms))
    return out
