"""Ray's processes: which belong to a session, and waiting for them to end."""

from __future__ import annotations

import time
from pathlib import Path


def ray_processes(session_dir: str | None) -> list[str]:
    """Command lines of live processes that belong to a Ray session (gcs, raylet, workers)."""
    if not session_dir:
        return []
    name = Path(session_dir).name
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if name in cmdline:
                found.append(cmdline[:200])
    return found


def wait_gone(session_dir: str | None, seconds: float = 20.0) -> list[str]:
    deadline = time.time() + seconds
    while (left := ray_processes(session_dir)) and time.time() < deadline:
        time.sleep(0.5)
    return left
