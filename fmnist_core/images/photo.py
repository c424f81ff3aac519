"""Find the item in a photo (or a drawing) and render it as Fashion-MNIST renders items.

A person sees the surface under a photo's item as one thing, however unevenly lit or
textured, and the item as what differs from it. So does this module:

1. the image, smoothed (texture of sheets, wood grain and tile joints averages out), in Lab;
2. the background's colour modelled as a smooth surface (a 2nd-order polynomial per Lab
   channel: a light gradient or a lamp's falloff), fitted robustly to the border, then to
   everything that looks like background;
3. the item: pixels whose colour distance to that model stands out from the background's
   own noise, cleaned (opening, closing, holes filled) and split into connected components;
4. the largest component is the item; its contrast to the background (dark items on light
   surfaces are negated), stretched, kept inside its mask, cropped to its outline, longest
   side scaled to 28 and centred, as Fashion-MNIST's items are.

What it is unsure about comes back as data (`Unsure`), for the page or the CLI to word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np
from PIL import Image

from fmnist_core.images.data import IMAGE_SIZE

cv2.setNumThreads(1)  # images here are small; threads would only fight torch for the 2 cores

SEGMENT_SIDE = 256  # the item is found at this size (longest side): fast, and plenty for a 28 px result
RENDER_SIDE = 512  # and rendered from this size: enough detail for 28 px after a crop
SMOOTHING = 2.0  # Gaussian sigma at SEGMENT_SIDE, px: averages out fabric, grain and tile texture
BORDER = 0.04  # the ring the background model starts from, as a fraction of the shorter side
NOISE_SIGMAS = 4.0  # an item pixel differs from the background model by this many noise sigmas...
MIN_DISTANCE = 7.0  # ...and by at least this Lab distance (about twice a just-noticeable difference)
GAP_WIDTH = 7  # px at SEGMENT_SIDE: a hole at least this wide shows the surface through the item
MIN_ITEM_AREA = 0.004  # a component smaller than this fraction of the image is a speck, not an item
SECOND_ITEM_RATIO = 0.3  # a second component at least this large (relative to the item) is a second item
MAX_DESKEW = 20.0  # degrees: a larger tilt is more likely the item's own shape (a sandal, a bag's strap) than a crooked photo
MIN_DESKEW = 1.0  # degrees: less is not worth a resampling
INK_THRESHOLD = 0.08  # a drawing's contrast, as a fraction of its highest, that counts as item (for cropping)
FLAT_SHARE = 0.3  # a border with this share of pixels of exactly one colour is a drawing's or a scan's
INK_FLOOR = 0.3  # a photo's item is at least this bright inside its mask, so an item the colour of its
#                  surface is a silhouette, not a hole (Fashion-MNIST items are solid)


class Unsure(StrEnum):
    """Why a result may be wrong: data for the caller to word."""

    NO_CLEAR_ITEM = "no_clear_item"
    SEVERAL_ITEMS = "several_items"
    TOUCHES_EDGE = "touches_edge"


@dataclass
class ItemCut:
    model_input: np.ndarray | None  # uint8 (28, 28), light item on black; None when no item was found
    mask: np.ndarray  # bool (H, W) at the given image's size: the item
    confidence: float  # 0-1: how clearly the item stands out from its background
    unsure: list[Unsure] = field(default_factory=list)
    flat_background: bool = False  # a drawing or a clean scan: no light or texture to model


def find_item(image: Image.Image | np.ndarray, fit_size: int = IMAGE_SIZE) -> ItemCut:
    """An 8-bit image (L, LA, RGB, RGBA, P) -> the item's mask and its Fashion-MNIST-like
    28x28 rendering. inference.to_model_input takes any bit depth."""
    rgb = as_rgb(image)  # uint8 (H, W, 3)
    height, width = rgb.shape[:2]
    mid = _shrink_to(rgb, RENDER_SIDE)  # a photo's item is rendered from this
    small = _shrink_to(mid, SEGMENT_SIDE)  # and found in this
    surface = _exact_surface(small)
    flat = surface is not None
    if surface is not None:  # flat, so nothing to model: distance to the one colour, unsmoothed (thin strokes are item)
        lab = _lab(small)
        distance, noise = np.linalg.norm((lab - _lab(surface[None, None])[0])[..., :3], axis=2), 0.0
    else:
        lab = _lab(cv2.GaussianBlur(small, (0, 0), SMOOTHING * min(1.0, max(small.shape[:2]) / SEGMENT_SIDE)))
        background, distance, noise = _background_model(lab)
    threshold = max(NOISE_SIGMAS * noise, MIN_DISTANCE)
    components, areas, labels = _components(distance > threshold, flat)
    total = distance.size
    if not areas or areas[0] < MIN_ITEM_AREA * total:
        return ItemCut(None, np.zeros((height, width), bool), 0.0, [Unsure.NO_CLEAR_ITEM], flat)
    if flat:  # a drawing's strokes need not touch (a sandal's straps): every stroke is item
        item_small = labels > 0
    else:
        item_small = labels == components[0]
    unsure = []
    if not flat and len(areas) > 1 and areas[1] >= SECOND_ITEM_RATIO * areas[0]:
        unsure.append(Unsure.SEVERAL_ITEMS)
    if _touches_edge(item_small):
        unsure.append(Unsure.TOUCHES_EDGE)
    margin = distance[item_small] / threshold  # how far past the threshold the item's pixels are
    confidence = float(np.clip(np.median(margin) - 1.0, 0.0, 2.0) / 2.0)
    if confidence < 0.1:
        unsure.append(Unsure.NO_CLEAR_ITEM)
    if surface is not None:  # flat
        mask, model_input = _render_flat(rgb, surface, fit_size)
    else:
        soft = cv2.resize(item_small.astype(np.float32), mid.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        soft = cv2.GaussianBlur(soft, (0, 0), max(1.0, 0.5 * max(mid.shape) / max(small.shape)))  # a smooth outline
        model_input = _render_photo(mid, soft > 0.5, soft, background, fit_size)
        mask = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
    return ItemCut(model_input, mask, confidence, unsure, flat)


def _shrink_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """Scaled down (area averaging) so the longest side is at most `side`."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(8, round(width * scale)), max(8, round(height * scale))), interpolation=cv2.INTER_AREA)


def as_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """An 8-bit image (as inference.open_image or to_8bit gives) -> uint8 (H, W, 3).
    Transparent pixels become white: a product photo with a transparent background is then
    treated like one shot on white."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if image.mode in ("RGBA", "LA"):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _exact_surface(rgb: np.ndarray) -> np.ndarray | None:
    """The border's one colour, when most of the border is exactly it: a drawing, a scan or a
    rendered product shot. A camera's noise and JPEG never leave that many equal pixels."""
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # (n, 3)
    colours, counts = np.unique(ring, axis=0, return_counts=True)
    if counts.max() < FLAT_SHARE * len(ring):
        return None
    return colours[counts.argmax()]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 4): Lab (L in 0-100, a and b about -100-100) for colour distances, and gray
    (0-100, as Pillow's "L") for rendering: Fashion-MNIST's pixel values are gray levels."""
    rgb = rgb.astype(np.float32) / 255.0
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) * 100.0
    return np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab), gray])


@dataclass
class Background:
    """The surface's Lab colour and gray level as polynomials in normalised coordinates (-1 to 1)."""

    coefficients: np.ndarray  # (6, 4)

    def within(self, shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
        """Evaluated on the pixels of box (top, bottom, left, right) of a frame of `shape`: float32 (h, w, 4)."""
        top, bottom, left, right = box
        design = _design(*shape, rows=slice(top, bottom), cols=slice(left, right))
        return (design @ self.coefficients).reshape(bottom - top, right - left, 4).astype(np.float32)


def _design(height: int, width: int, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
    v: np.ndarray
    u: np.ndarray
    v, u = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32)[rows], np.linspace(-1, 1, width, dtype=np.float32)[cols], indexing="ij")
    u, v = u.ravel(), v.ravel()
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)  # (H*W, 6)


def _background_model(lab: np.ndarray) -> tuple[Background, np.ndarray, float]:
    """Fit the surface's colour, first to the border ring, then to all that matches it.
    Returns the model, each pixel's Lab distance to it (H, W), and the background's noise."""
    height, width = lab.shape[:2]
    design = _design(height, width)
    values = lab.reshape(-1, 4)
    ring = max(2, round(BORDER * min(height, width)))
    use: np.ndarray = np.zeros((height, width), bool)
    use[:ring], use[-ring:], use[:, :ring], use[:, -ring:] = True, True, True, True
    use = use.ravel()
    for _ in range(4):
        chosen = np.flatnonzero(use)[:: max(1, int(use.sum()) // 4000)]  # a few thousand points are enough
        coefficients = np.linalg.lstsq(design[chosen], values[chosen], rcond=None)[0]
        distance = np.linalg.norm((values - design @ coefficients)[:, :3], axis=1)
        noise = 1.4826 * float(np.median(distance[use])) + 1e-3  # robust sigma, from the MAD
        # Next fit: every pixel that matches the model, so that an item touching the border
        # (or a shadow on the ring) stops pulling the surface towards itself.
        use = distance < max(NOISE_SIGMAS * noise, MIN_DISTANCE * 0.5)
        if use.sum() < 50:
            break
    return Background(coefficients), distance.reshape(height, width).astype(np.float32), noise


def _components(foreground: np.ndarray, flat: bool) -> tuple[list[int], list[int], np.ndarray]:
    """Clean the foreground and split it: component labels, largest first, with their areas."""
    mask = foreground.astype(np.uint8)
    if not flat:  # texture leaves specks and thin lines (tile joints); a garment is solid
        seen = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disc(3))
        mask = _fill_holes(cv2.morphologyEx(seen, cv2.MORPH_CLOSE, _disc(7)))
        # A hole wide enough to be surface seen through the item (between a sandal's straps,
        # inside a bag's handle) is background again; narrow ones are the item's own pattern.
        # cv2's stubs type every image as integer-or-float; this one is uint8, as `mask` is
        mask &= 1 - cv2.morphologyEx(mask & (1 - seen), cv2.MORPH_OPEN, _disc(GAP_WIDTH))  # type: ignore[arg-type, operator]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return order, [int(stats[i, cv2.CC_STAT_AREA]) for i in order], labels


def _disc(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background reachable from the border stays background; every other hole is item."""
    padded = np.pad(mask, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return (padded | (1 - flood))[1:-1, 1:-1]


def _touches_edge(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _render_flat(rgb: np.ndarray, surface: np.ndarray, fit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A drawing or a scan, at full resolution: its contrast to the one surface colour, at
    full contrast, shading untouched, cropped where the contrast passes INK_THRESHOLD."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ink = np.abs(gray - float(cv2.cvtColor(surface[None, None], cv2.COLOR_RGB2GRAY)[0, 0]))
    ink /= max(float(ink.max()), 1e-3)
    mask = ink > INK_THRESHOLD
    return mask, _fit_and_centre(_crop(ink, mask), fit_size)


def _render_photo(rgb: np.ndarray, mask: np.ndarray, soft: np.ndarray, background: Background, fit_size: int) -> np.ndarray:
    """The item as Fashion-MNIST shows one: its contrast to the surface, light on black,
    kept inside its mask and at least INK_FLOOR there, turned upright (deskew), cropped to
    the mask's outline."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    lightness = cv2.cvtColor(rgb[top:bottom, left:right], cv2.COLOR_RGB2GRAY).astype(np.float32) * (100 / 255)  # (h, w)
    surface = background.within(mask.shape, (top, bottom, left, right))[..., 3]
    inside = mask[top:bottom, left:right]
    contrast = surface - lightness  # > 0 where the item is darker than its surface
    if np.median(contrast[inside]) < 0:  # a light item on a darker surface
        contrast = -contrast
    ink = np.clip(contrast / max(float(np.percentile(contrast[inside], 99)), 1e-3), 0.0, 1.0)
    item = np.maximum(ink, INK_FLOOR) * soft[top:bottom, left:right]
    angle = _skew(inside)
    if angle:
        item = _rotated(item, angle)
        item = _crop(item, item > 0.5 * INK_FLOOR)
    return _fit_and_centre(item, fit_size)


def _skew(mask: np.ndarray) -> float:
    """Degrees to turn the item by so that its smallest enclosing rectangle stands upright, when
    that is at most MAX_DESKEW either way (a garment laid a little crooked, a phone held at an
    angle); 0 otherwise, since Fashion-MNIST's items are upright."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is None or len(points) < 3:
        return 0.0
    (_, _), (width, height), angle = cv2.minAreaRect(points)
    angle = (angle + 45) % 90 - 45  # the rectangle's tilt from upright, in [-45, 45), whatever range OpenCV uses
    return float(angle) if MIN_DESKEW <= abs(angle) <= MAX_DESKEW else 0.0


def _rotated(image: np.ndarray, angle: float) -> np.ndarray:
    """`image` turned by `angle` degrees about its centre, on a canvas large enough to keep it whole."""
    h, w = image.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[0, 2] += new_w / 2 - w / 2
    matrix[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _crop(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit_and_centre(ink: np.ndarray, fit_size: int) -> np.ndarray:
    """float (h, w) in [0, 1] -> uint8 (28, 28): longest side scaled to fit_size, centred."""
    h, w = ink.shape
    scale = fit_size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray((ink * 255).astype(np.uint8)).resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    # Round half up, as Fashion-MNIST centres odd margins (checked on its test set).
    top, left = (IMAGE_SIZE - new_h + 1) // 2, (IMAGE_SIZE - new_w + 1) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(resized)
    return canvas


def mask_overlay(image: Image.Image | np.ndarray, mask: np.ndarray, tint: tuple[int, int, int] = (255, 40, 40)) -> np.ndarray:
    """The image with the found item tinted and outlined, for a preview: uint8 (H, W, 3)."""
    rgb = as_rgb(image).copy()
    if mask.any():
        rgb[mask] = (0.55 * rgb[mask] + 0.45 * np.array(tint)).astype(np.uint8)
        thickness = max(1, round(max(mask.shape) / 300))
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, tint, thickness)
    return rgb
