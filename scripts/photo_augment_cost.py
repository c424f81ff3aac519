"""Training images/s of the `fast` recipe with and without photo augmentation, on one thread.

    taskset -c 1 python scripts/photo_augment_cost.py [--batches 40] [--strength 0.5]

Times engine.train_one_epoch itself on the first batches of the training set. Prints wall
and CPU (this thread's) images/s: on a machine shared with other work, CPU time is the
steadier figure of the two.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
import time

import torch
from torch import nn

from fmnist_core.images.data import load_fashion_mnist, normalize
from fmnist_core.modeling.recipes import recipe_config
from fmnist_core.training.engine import build_model, build_optimizer, build_scheduler, train_one_epoch


def images_per_second(config, images, labels) -> tuple[float, float]:
    model = build_model(config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, len(images) // config.batch_size + 1)

    def one_pass(n: int) -> None:
        train_one_epoch(model, optimizer, scheduler, nn.CrossEntropyLoss(), images[:n], labels[:n], config,
                        torch.Generator().manual_seed(0), threading.Event(), lambda *a: None)

    one_pass(3 * config.batch_size)  # warm-up: allocator, kernels
    wall, cpu = time.perf_counter(), time.thread_time()
    one_pass(len(images))
    return len(images) / (time.perf_counter() - wall), len(images) / (time.thread_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--strength", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = recipe_config("fast", threads=1)
    n = args.batches * base.batch_size
    data = load_fashion_mnist()
    images, labels = normalize(data.train_images[:n]), data.train_labels[:n]
    print(f"fast recipe ({base.model}, batch {base.batch_size}, {base.precision}), {args.batches} batches, 1 thread")
    print(f"{'photo_augment':>14} {'img/s wall':>11} {'img/s CPU':>10}")
    for strength in (0.0, args.strength):
        wall, cpu = images_per_second(dataclasses.replace(base, photo_augment=strength), images, labels)
        print(f"{strength:>14g} {wall:>11,.0f} {cpu:>10,.0f}")


if __name__ == "__main__":
    main()
