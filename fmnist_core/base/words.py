"""Counts in words for messages the CLI and the app show: "1 epoch", "2 epochs"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with its noun in the right number; `plural` where adding "s" is wrong (batch -> batches)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
