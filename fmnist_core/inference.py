"""Turn drawings and photos into Fashion-MNIST-like inputs, and predict.

Fashion-MNIST images are light items on a black background, trimmed to the item and
scaled so its longest side fills the frame, centred. `to_model_input` does the same
to anything a user brings: one function, used by the app and by the CLI.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import CLASSES, IMAGE_SIZE, normalize
from .errors import UserError
from .scoring import class_probabilities

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB: far above any photo of one clothing item
MAX_PIXELS = 40_000_000  # decoded size; a larger image is refused as a decompression bomb
FIT_SIZE = 28  # longest side of the item in the 28x28 frame (measured: see README, preprocessing)
INK_THRESHOLD = 0.08  # fraction of the image's contrast that counts as "item", for cropping


class ImageError(UserError):
    """The input is not a usable image; the message says why, for the user."""


@dataclass
class Prediction:
    label: str
    probability: float
    probabilities: list[float]  # one per class, in CLASSES order
    top: list[tuple[str, float]]
    milliseconds: float


def open_image(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Decode uploaded bytes safely: size-capped, bombs refused, first frame of a GIF."""
    if len(data) == 0:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(
                    f"the image is {image.width}x{image.height} pixels; images up to {MAX_PIXELS // 1_000_000} megapixels are accepted"
                )
            image.seek(0)  # first frame of an animation
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"the image is too large to decode safely ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError("the file is not an image Pillow can read (use PNG, JPEG, WebP, BMP or GIF)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"the image is damaged or truncated ({e})") from e
    return ImageOps.exif_transpose(image)


def _grayscale(image: Image.Image) -> np.ndarray:
    """Float grayscale in [0, 1]. Transparent pixels become white: a product photo with
    a transparent background is then treated like one shot on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_model_input(image: Image.Image | np.ndarray, fit_size: int = FIT_SIZE) -> np.ndarray:
    """Any image -> uint8 (28, 28), light item on black, cropped, scaled, centred.

    Raises ImageError when nothing stands out from the background (an empty canvas)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    gray = _grayscale(image)  # (H, W) in [0, 1]
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 0.5:  # light background (paper, product photo): make it dark
        gray, background = 1.0 - gray, 1.0 - background
    ink = np.clip(gray - background, 0.0, None)
    peak = float(ink.max())
    if peak < 0.05:
        raise ImageError("nothing to classify: the image is blank (draw or photograph one item)")
    ink /= peak  # full contrast, as in Fashion-MNIST
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = fit_size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    # Round half up, as Fashion-MNIST centres odd margins (checked on its test set).
    top, left = (IMAGE_SIZE - new_h + 1) // 2, (IMAGE_SIZE - new_w + 1) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized)
    return canvas


def classify(model: torch.nn.Module, image: Image.Image | np.ndarray) -> tuple[np.ndarray, Prediction]:
    """One image, any source -> (the 28x28 input the model sees, its prediction)."""
    model_input = to_model_input(image)
    return model_input, predict_images(model, [model_input])[0]


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
