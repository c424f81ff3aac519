"""Phone-like photos made from Fashion-MNIST items: our own, seeded, for tests, recipes and figures.

Each 28x28 item is upscaled smoothly, given a garment colour and pattern shaded by the
item's own pixels, rotated a little, dropped with a soft shadow onto a textured surface
(bed sheet, wood table, floor) under uneven light, with sensor noise, and saved and decoded
as JPEG at quality 70-90. The true item mask comes back with every photo, so the
preprocessing (fmnist_core.images.photo) can be scored by its mask's overlap, not only by accuracy.

Shading follows how Fashion-MNIST was made: its items are negated product photos, so a
bright pixel of the 28x28 item is a dark part of the garment in the photo.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_folder
from fmnist_core.images.data import CLASSES

# Background families per look. "default" is what the pipeline is tuned on (from training
# images) and measured on (from test images); "night" is kept out of both: dark surfaces under
# a warm lamp, for a fine-tuning set "of a different look".
LOOKS = {
    "default": ("bed", "wood", "floor"),
    "bed": ("bed",),
    "wood": ("wood",),
    "floor": ("floor",),
    "night": ("night",),
}
HELD_OUT_LOOK = "night"
SIDE_RANGE = (480, 900)  # the photo's longest side, px
ITEM_FILL = (0.45, 0.7)  # the item's longest side as a fraction of the photo's shorter side
MAX_ROTATION = 12.0  # degrees either way
JPEG_QUALITY = (70, 90)


@dataclass
class SynthPhoto:
    image: Image.Image  # RGB, decoded from `jpeg`
    jpeg: bytes  # the photo as a phone would save it
    mask: np.ndarray  # bool (H, W): where the item is
    label: int
    look: str  # the background family it was drawn from


def synth_photos(images: np.ndarray, labels, seed: int, look: str = "default", edge: bool = False,
                 colour: tuple[int, int, int] | None = None) -> list[SynthPhoto]:
    """uint8 (N, 28, 28) Fashion-MNIST items -> N phone-like photos, the same for the same seed.

    `edge`: push each item over a side of the frame (for the "touches the edge" warning).
    `colour`: one plain RGB garment colour for all, instead of random colours and patterns."""
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}; choose from {', '.join(LOOKS)}")
    rng = np.random.default_rng(seed)
    images = np.asarray(images, dtype=np.uint8)
    return [_one_photo(item, int(label), rng, look, edge, colour) for item, label in zip(images, labels)]


def synth_scene(items: list[np.ndarray], seed: int, look: str = "default", empty: bool = False) -> SynthPhoto:
    """Several items side by side on one surface (or none: `empty`), for the warnings' tests."""
    rng = np.random.default_rng(seed)
    family = rng.choice(LOOKS[look])
    height, width = 600, 900
    scene = _surface(family, height, width, rng)
    mask = np.zeros((height, width), bool)
    for i, item in enumerate([] if empty else items):
        slot = width // len(items)
        rgb, alpha = _garment(item, int(min(height, slot) * 0.8), rng, family)
        top, left = (height - alpha.shape[0]) // 2, i * slot + (slot - alpha.shape[1]) // 2
        scene, placed = _paste(scene, rgb, alpha, top, left, rng)
        mask |= placed
    return SynthPhoto(*_finish(scene, family, rng), mask, -1, str(family))


def _one_photo(item: np.ndarray, label: int, rng: np.random.Generator, look: str, edge: bool,
               colour: tuple[int, int, int] | None) -> SynthPhoto:
    family = rng.choice(LOOKS[look])
    side = int(rng.integers(*SIDE_RANGE))
    height, width = (side, int(side * 0.75)) if rng.random() < 0.5 else (int(side * 0.75), side)
    scene = _surface(family, height, width, rng)
    rgb, alpha = _garment(item, int(min(height, width) * rng.uniform(*ITEM_FILL)), rng, family, colour)
    h, w = alpha.shape
    slack_y, slack_x = max(height - h, 0), max(width - w, 0)
    top = int(slack_y * rng.uniform(0.3, 0.7))
    left = int(slack_x * rng.uniform(0.3, 0.7))
    if edge:  # over a side of the frame by 5-15% of the item
        left = -int(w * rng.uniform(0.05, 0.15)) if rng.random() < 0.5 else width - w + int(w * rng.uniform(0.05, 0.15))
    scene, mask = _paste(scene, rgb, alpha, top, left, rng)
    return SynthPhoto(*_finish(scene, family, rng), mask, label, str(family))


def _garment(item: np.ndarray, size: int, rng: np.random.Generator, family: str,
             colour: tuple[int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A coloured, patterned, shaded garment: float RGB (h, w, 3) in [0, 1] and its alpha (h, w)."""
    shade = cv2.resize(item.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_CUBIC)
    shade = cv2.GaussianBlur(np.clip(shade, 0, 1), (0, 0), size / 120)  # smooth, not blocky
    alpha = np.clip((shade - 0.03) / 0.06, 0, 1)  # Fashion-MNIST's background is 0; its faint rim is item
    if colour is None:
        first = _garment_colour(rng, family)
        second = np.clip(first * rng.uniform(0.4, 1.6) + rng.normal(0, 0.15, 3), 0, 1)
        pattern = _pattern(size, rng)[..., None]  # (h, w, 1) in [0, 1]
        base = first * (1 - pattern) + second * pattern
    else:
        base = np.broadcast_to(np.array(colour, np.float32) / 255.0, (size, size, 3))
    lighting = (1.0 - 0.55 * shade)[..., None]  # negated, as Fashion-MNIST's items were made
    rgb = np.clip(base * lighting, 0, 1)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION)
    return _rotate(rgb, angle), np.clip(_rotate(alpha, angle), 0, 1)


def _garment_colour(rng: np.random.Generator, family: str) -> np.ndarray:
    hue = rng.uniform(0, 180)
    saturation = rng.uniform(0, 200) if rng.random() < 0.7 else rng.uniform(0, 40)
    value = rng.uniform(40, 255) if family != "night" else rng.uniform(90, 255)
    hsv = np.array([[[hue, saturation, value]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _pattern(size: int, rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["plain", "plain", "stripes", "checks", "dots", "heather"])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = size / rng.uniform(8, 25)
    if kind == "stripes":
        theta = rng.uniform(0, np.pi)
        return (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0).astype(np.float32)
    if kind == "checks":
        return (((xx // period) + (yy // period)) % 2).astype(np.float32)
    if kind == "dots":
        return ((np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period)) > 0.6).astype(np.float32)
    if kind == "heather":
        return np.clip(rng.normal(0.5, 0.25, (size, size)).astype(np.float32), 0, 1) * 0.6
    return np.zeros((size, size), np.float32)


def _rotate(array: np.ndarray, angle: float) -> np.ndarray:
    h, w = array.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(array, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def _noise_field(height: int, width: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in about [-1, 1] with features of about `scale` px."""
    small = rng.normal(0, 1, (max(2, int(height / scale) + 2), max(2, int(width / scale) + 2))).astype(np.float32)
    field = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return field / (np.abs(field).max() + 1e-6)


def _surface(family: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A textured surface, float RGB (H, W, 3) in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if family == "bed":  # a sheet: light, soft folds, fine weave
        colour = np.array([rng.uniform(0.8, 0.98), rng.uniform(0.78, 0.97), rng.uniform(0.75, 0.98)], np.float32)
        folds = 0.08 * _noise_field(height, width, rng.uniform(60, 160), rng)
        weave = 0.03 * np.sin(xx * 1.7) * np.sin(yy * 1.7)
        texture = folds + weave
    elif family == "wood":  # a table: brown, grain along one axis
        colour = np.array([rng.uniform(0.45, 0.75), rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.3)], np.float32)
        warp = 30 * _noise_field(height, width, 120, rng)
        grain = np.sin((yy + warp) * 2 * np.pi / rng.uniform(8, 20))
        texture = 0.07 * grain + 0.05 * _noise_field(height, width, 40, rng)
    elif family == "floor":  # tiles or carpet: grey to beige, joints or speckle
        colour = np.full(3, rng.uniform(0.35, 0.8), np.float32) * np.array([1.0, rng.uniform(0.92, 1.0), rng.uniform(0.8, 1.0)], np.float32)
        if rng.random() < 0.5:
            tile = rng.uniform(120, 260)
            joints = ((xx % tile) < 3) | ((yy % tile) < 3)
            texture = -0.15 * joints + 0.04 * _noise_field(height, width, 30, rng)
        else:
            texture = 0.06 * rng.normal(0, 1, (height, width)).astype(np.float32)
            texture = cv2.GaussianBlur(texture, (0, 0), 1.2) * 2
    else:  # night: a dark blanket or sofa
        colour = np.array([rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.25), rng.uniform(0.08, 0.3)], np.float32)
        texture = 0.06 * _noise_field(height, width, rng.uniform(40, 120), rng) + 0.03 * np.sin(xx * 1.3) * np.sin(yy * 1.3)
    return np.clip(colour * (1 + texture[..., None]), 0, 1)


def _paste(scene: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, top: int, left: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lay the garment on the scene with a soft shadow; clipped by the frame. Returns the scene and the item mask."""
    height, width = scene.shape[:2]
    full_alpha = np.zeros((height, width), np.float32)
    full_rgb = np.zeros((height, width, 3), np.float32)
    h, w = alpha.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, height), min(left + w, width)
    full_alpha[y0:y1, x0:x1] = alpha[y0 - top : y1 - top, x0 - left : x1 - left]
    full_rgb[y0:y1, x0:x1] = rgb[y0 - top : y1 - top, x0 - left : x1 - left]
    offset = rng.uniform(0.01, 0.03) * h
    shift = np.array([[1, 0, offset * rng.uniform(-1, 1)], [0, 1, offset]], np.float32)
    shadow = cv2.warpAffine(full_alpha, shift, (width, height))
    shadow = cv2.GaussianBlur(shadow, (0, 0), max(2.0, 0.03 * h))
    scene = scene * (1 - rng.uniform(0.15, 0.35) * shadow)[..., None]
    scene = scene * (1 - full_alpha[..., None]) + full_rgb * full_alpha[..., None]
    return scene, full_alpha > 0.5


def _finish(scene: np.ndarray, family: str, rng: np.random.Generator) -> tuple[Image.Image, bytes]:
    """Uneven light, sensor noise, JPEG."""
    height, width = scene.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = ((xx / width - 0.5) * np.cos(theta) + (yy / height - 0.5) * np.sin(theta))
    cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
    falloff = ((yy - cy) ** 2 + (xx - cx) ** 2) / (height**2 + width**2)
    light = 1.0 + rng.uniform(0.2, 0.5) * ramp - rng.uniform(0.2, 0.6) * falloff
    tint = np.array([1.0, 1.0, 1.0], np.float32)
    if family == "night":  # a warm lamp, dimmer and noisier
        tint = np.array([1.0, 0.85, 0.65], np.float32)
        light = light * rng.uniform(0.6, 0.9)
    photo = scene * light[..., None] * tint
    photo = photo + rng.normal(0, rng.uniform(0.008, 0.025) * (2 if family == "night" else 1), photo.shape).astype(np.float32)
    pixels = np.clip(photo * 255 + 0.5, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), buffer.getvalue()


def class_folder(label: int) -> str:
    """A class's folder name in an ImageFolder layout: its name, with '/' (not allowed in a
    folder name) as '_': T-shirt_top, Trouser, ..."""
    return CLASSES[label].replace("/", "_")


def write_image_folder(photos: list[SynthPhoto], out: Path, start: int = 0) -> None:
    """Photos as JPEG files, one subfolder per class (torchvision's ImageFolder layout).
    Written whole or not at all (files.atomic_folder): a failure leaves nothing half-written."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} already exists and is not empty; choose a new folder")
    try:
        with atomic_folder(out, replace_empty=True) as temporary:
            for i, photo in enumerate(photos):
                folder = temporary / class_folder(photo.label)
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{start + i:05d}.jpg").write_bytes(photo.jpeg)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from e
