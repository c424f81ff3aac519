"""A sweep of 4 one-thread trials against the same 4 runs one after another, side by side.

    .venv/bin/python scripts/sweep_vs_serial.py [--model cnn_c] [--epochs 1] [--subset N]

Both train the same configs (the model at 4 learning rates, one torch thread each, the
full data set unless --subset) into a temporary run store; the sweep's time includes
starting Ray. Prints one table and the ratio sweep / serial.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmnist_core.images.data import FashionMNIST, load_fashion_mnist  # noqa: E402
from fmnist_core.modeling.config import TrainConfig  # noqa: E402
from fmnist_core.store.run_store import RunStore  # noqa: E402
from fmnist_core.sweeps.sweep import SweepSpec, run_sweep  # noqa: E402
from fmnist_core.sweeps.sweep_space import Dimension  # noqa: E402
from fmnist_core.training.run_manager import train_run  # noqa: E402

LEARNING_RATES = (0.01, 0.02, 0.05, 0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn_c")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--subset", type=int)
    args = parser.parse_args()
    base = TrainConfig(model=args.model, epochs=args.epochs, threads=1)
    data = load_fashion_mnist()
    if args.subset:
        n = args.subset
        data = FashionMNIST(data.train_images[:n], data.train_labels[:n], data.test_images[:n], data.test_labels[:n], data.source)
    with tempfile.TemporaryDirectory() as folder:
        serial_store = RunStore(Path(folder) / "serial")
        started = time.perf_counter()
        serial_runs = []
        for lr in LEARNING_RATES:
            config = TrainConfig(**{**base.to_dict(), "lr": lr})
            run_id = serial_store.create(config).name
            result = train_run(serial_store, run_id, config, data=data)
            serial_runs.append((lr, result["seconds"], result["test_accuracy"]))
        serial = time.perf_counter() - started

        spec = SweepSpec(base=base, space=[Dimension("lr", "grid", LEARNING_RATES)], cpus_per_trial=1, subset=args.subset,
                         name="sweep vs serial")
        summary = run_sweep(spec, store=RunStore(Path(folder) / "sweep"), echo=lambda line: None)
        trials = {r.config["lr"]: r for r in RunStore(Path(folder) / "sweep").list()}

    print(f"{args.model}, {args.epochs} epoch(s), {'first ' + str(args.subset) if args.subset else 'all'} images, 1 thread per run")
    print(f"{'lr':>6} {'serial s':>9} {'serial acc':>10} {'trial s':>8} {'trial acc':>9}")
    for lr, seconds, accuracy in serial_runs:
        trial = trials[lr].history[-1]
        print(f"{lr:>6} {seconds:>9.1f} {accuracy:>10.2f} {trial['elapsed_s']:>8.1f} {trial['test_accuracy']:>9.2f}")
    print(f"4 runs one after another: {serial:.1f} s")
    print(f"sweep of 4 trials:        {summary['seconds']:.1f} s (Ray start-up {summary['ray_start_s']:.1f} s)")
    print(f"ratio sweep / serial:     {summary['seconds'] / serial:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
