"""Fine-tune a checkpoint on a photo folder and print the trade-off, optionally on a subset of
the Fashion-MNIST training images (a quicker stand-in for `train --from CKPT --photos DIR`).

    python scripts/measure_finetune.py CKPT PHOTO_DIR [--train-images N] [--epochs E] [--threads T]

With --train-images N, each epoch uses N training images (from outside the 5,000-image
validation split) instead of all 55,000; the test set is always scored whole. Prints the
starting and final test accuracy and the accuracy on the photo set's held-out part.
"""

from __future__ import annotations

import argparse
import dataclasses

from fmnist_core.images.data import load_fashion_mnist, split_train_validation
from fmnist_core.training.engine import fit
from fmnist_core.training.finetune import finetune_config, prepare_sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("photos")
    parser.add_argument("--train-images", type=int, default=0, help="0 = all (default)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    given = {"photos": args.photos, "threads": args.threads, **({"epochs": args.epochs} if args.epochs else {})}
    config, photo_data = prepare_sources(finetune_config(args.checkpoint, given))
    data = load_fashion_mnist()
    if args.train_images:
        keep, _ = split_train_validation(len(data.train_labels), config.validation, seed=config.seed)
        pick = keep[: args.train_images]
        data = dataclasses.replace(data, train_images=data.train_images[pick], train_labels=data.train_labels[pick])
        config = dataclasses.replace(config, validation=0)
    print(f"fine-tuning {config.model} for {config.epochs} epoch(s) at lr {config.lr:g} ({config.schedule}) on "
          f"{len(data.train_labels):,} training images + {len(photo_data.train_labels)} photos; "
          f"{len(photo_data.heldout_labels)} held out")
    result = fit(config, data=data, photo_data=photo_data)
    print(f"start: test {result.start['start_test_accuracy']:.2f}%, held-out photos {result.start['start_photo_accuracy']:.2f}%")
    for record in result.history:
        print(f"epoch {record['epoch']}: test {record['test_accuracy']:.2f}%, held-out photos {record['photo_accuracy']:.2f}%")


if __name__ == "__main__":
    main()
