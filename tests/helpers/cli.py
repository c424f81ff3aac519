"""Running the command line as a user does: its JSON output, a shipped checkpoint, a memory bound."""

from __future__ import annotations

import io
import json
import resource
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from fmnist_core.base.paths import pretrained_dir

CHECKPOINT = str(pretrained_dir() / "cnn_c_report")
MEMORY_BOUND = 4 * 2**30  # address space for the whole process: torch and its threads need ~3.5 GB of it


def limit_memory() -> None:
    """Runs in the child before exec: past this, allocation fails instead of the machine swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BOUND, MEMORY_BOUND))


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def run_main(*args: str) -> subprocess.CompletedProcess:
    """`python -m fmnist_core ARGS` in this process: the same exit code and output, without the
    3-5 s a new process spends importing torch. For refusals that stop before any work (the
    process itself keeps a test of its own: test_cli's test_the_process_gives_the_same_one_line)."""
    from fmnist_core.commands.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's refusals exit, as they do in the process
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
