"""A photo-like set "of a different look", made from Fashion-MNIST training images, in the
ImageFolder layout `train --photos DIR` reads (one subfolder per class), for measuring
fine-tuning without real photos.

    python scripts/make_photo_like_set.py OUT_DIR [--count 200] [--seed 0]

The images come from the 5,000-image validation split (TrainConfig.validation 5000, seed 0),
which a model trained with `--validation 5000` never saw, and never from the test set. Each
item is drawn as a dark, striped garment on a lighter surface lit from one side, blurred,
with sensor noise, at 4x size: after `to_model_input` it is a light item with stripes, a
softer outline and some of the light's gradient, unlike any Fashion-MNIST image. A
stand-in until the synthetic photo generator (issue 20) exists; the look is fixed by the seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from fmnist_core.images.data import CLASSES, load_fashion_mnist, split_train_validation

SCALE = 4  # 28 px -> 112 px item
MARGIN = 24  # px of surface around the item
VALIDATION = 5000  # the recipes' validation split (recipes.py), seed 0


def folder_name(label: int) -> str:
    return CLASSES[label].replace("/", "_")


def render(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """uint8 (28, 28) -> an 8-bit grayscale 'photo' (160, 160)."""
    item = np.asarray(Image.fromarray(image).resize((28 * SCALE, 28 * SCALE), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    item = np.pad(item, MARGIN)  # (160, 160)
    size = item.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle, period = rng.uniform(0, np.pi), rng.uniform(8, 14)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) * size / period)
    light = 0.95 - 0.12 * (xx if rng.random() < 0.5 else 1 - xx)  # a lighter and a darker side
    surface = light * 0.9
    darkness = item * (0.45 + 0.4 * stripes)  # a striped garment: the item's shading times its pattern
    photo = surface * (1 - darkness)
    photo = np.asarray(Image.fromarray(np.uint8(np.clip(photo, 0, 1) * 255)).filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32) / 255
    photo += rng.normal(0, 0.03, photo.shape)
    return Image.fromarray(np.uint8(np.clip(photo, 0, 1) * 255), "L")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200, help="photos, spread evenly over the classes (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_fashion_mnist()
    _, held = split_train_validation(len(data.train_labels), VALIDATION, seed=0)
    rng = np.random.default_rng(args.seed)
    per_class = -(-args.count // len(CLASSES))
    written = 0
    for label in range(len(CLASSES)):
        pool = held[data.train_labels[held] == label].numpy()
        folder = args.out / folder_name(label)
        folder.mkdir(parents=True, exist_ok=True)
        for index in rng.choice(pool, size=min(per_class, args.count - written), replace=False):
            render(data.train_images[index].numpy(), rng).save(folder / f"train{index:05d}.png")
            written += 1
    print(f"{written} photo-like images in {args.out}")


if __name__ == "__main__":
    main()
