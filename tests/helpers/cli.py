"""Running the command line as a user does: its JSON output, a shipped checkpoint, a memory bound."""

from __future__ import annotations

import json
import resource

from fmnist_core.base.paths import pretrained_dir

CHECKPOINT = str(pretrained_dir() / "cnn_c_report")
MEMORY_BOUND = 4 * 2**30  # address space for the whole process: torch and its threads need ~3.5 GB of it


def limit_memory() -> None:
    """Runs in the child before exec: past this, allocation fails instead of the machine swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])
