"""`make setup-test` installs system packages with apt-get; another apt-get holding its locks
(unattended-upgrades, a second `make`) made it fail at once (issue 23, item 11)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import threading
import time

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get") or not os.path.exists("/usr/bin/chromium"),
                                reason="needs root, apt-get and an installed package to reinstall as a no-op")
HELD_SECONDS = 6


def hold_lock(path: str, seconds: float) -> threading.Thread:
    """Hold apt's lock file as apt-get does (fcntl), for `seconds`, from a thread."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release():
        time.sleep(seconds)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)

    thread = threading.Thread(target=release)
    thread.start()
    return thread


@pytest.mark.xdist_group("apt locks")  # the machine's own apt locks: one holder at a time, even under xdist
@pytest.mark.parametrize("lock, command", [
    ("/var/lib/dpkg/lock-frontend", ["install", "-y", "-qq", "--no-install-recommends", "chromium"]),  # installed: a no-op
    ("/var/lib/apt/lists/lock", ["update", "-qq"]),
])
def test_setup_waits_for_another_package_manager_instead_of_failing(lock, command):
    holder = hold_lock(lock, HELD_SECONDS)
    started = time.monotonic()
    try:
        result = subprocess.run([str(ROOT / "scripts" / "apt_get_waiting.sh"), *command], capture_output=True, text=True,
                                timeout=300, env={**os.environ, "APT_WAIT": "60"})
    finally:
        holder.join()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= HELD_SECONDS - 1  # it waited for the lock, then did its work
