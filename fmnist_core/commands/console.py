"""Console output of a training run: a progress line on stderr, a table row per epoch."""

from __future__ import annotations

import sys

from fmnist_core.base.words import counted


def _fmt_seconds(s: float) -> str:
    return f"{int(s // 60)}:{int(s % 60):02d}"


class ConsoleProgress:
    """Engine callback: a one-line progress bar on stderr, one table row per epoch on stdout."""

    HEADER = f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test loss':>9} {'test acc':>8} {'seconds':>8} {'img/s':>8}"

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.out = sys.stderr if quiet else sys.stdout

    def on_run_start(self, event: dict) -> None:
        print(f"{event['model']}: {event['params']:,} parameters, {counted(event['epochs'], 'epoch')} of "
              f"{counted(event['batches_per_epoch'], 'batch', 'batches')}, {event['device']}, {counted(event['threads'], 'thread')}, {event['precision']}",
              file=self.out)
        print(self.HEADER, file=self.out)

    def on_batch_end(self, event: dict) -> None:
        if not sys.stderr.isatty():
            return
        width = 30
        filled = int(width * event["batch"] / event["batches"])
        sys.stderr.write(
            f"\r  [{'#' * filled}{'.' * (width - filled)}] epoch {event['epoch']} batch {event['batch']}/{event['batches']}"
            f" loss {event['loss']:.3f} {event['images_per_s']:,.0f} img/s ETA {_fmt_seconds(event['eta_s'])} "
        )
        sys.stderr.flush()

    def on_epoch_end(self, r: dict) -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\r" + " " * 100 + "\r")
        print(f"{r['epoch']:>5} {r['train_loss']:>10.4f} {r['train_accuracy']:>9.2f} {r['test_loss']:>9.4f} "
              f"{r['test_accuracy']:>8.2f} {r['seconds']:>8.1f} {r['images_per_s']:>8,.0f}", file=self.out, flush=True)
