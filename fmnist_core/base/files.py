"""File mechanics every store shares: atomic writes, the crash points of the kill tests,
content hashes, and the identity of the process that owns a file.

The checkpoint format, the run and sweep stores, photo sets, exports and caches all write
through here, so a reader never sees half a file and a kill -9 test can stop any save at
its last moment (issue 24: these lived in checkpoint.py, and the atomic write was written
three times).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide runs from other users


def crash_point(name: str, epoch: int | None = None) -> None:
    """Fault injection for the kill -9 tests (tests/app/test_resume.py): FMNIST_CRASH_AT=NAME or
    NAME@EPOCH sends SIGKILL to this process just before the rename that completes the save
    of file NAME, as a power cut would: no cleanup, no exception handler runs."""
    wanted = os.environ.get("FMNIST_CRASH_AT")
    if wanted and wanted in (name, f"{name}@{epoch}"):
        os.kill(os.getpid(), signal.SIGKILL)


def refuse_non_regular(path: Path) -> None:
    """Raise OSError when something other than a regular file (or a symlink, which a rename
    replaces without touching its target) is at `path`: a rename would replace a device
    node, a FIFO or a socket (as root, /dev/null became a regular file)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OSError(errno.EEXIST, "it is not a regular file (a folder, device, FIFO or socket), which is never replaced", str(path))


def atomic_write(path: Path, write_temp: Callable[[str], None], epoch: int | None = None) -> Path:
    """Create `path` through `write_temp(temp_path)`, which writes a temp file in the same
    folder, then one rename: readers see the old file or the new one, never half of one.
    `epoch` names the crash point (NAME@EPOCH) for files saved once per epoch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_temp(tmp)
        crash_point(path.name, epoch)
        os.chmod(tmp, FILE_MODE)
        refuse_non_regular(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` to `path` atomically, fsynced before the rename."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


@contextlib.contextmanager
def atomic_folder(target: Path, replace_empty: bool = False) -> Iterator[Path]:
    """A folder written whole or not at all: the block fills a hidden temporary sibling, which
    is renamed to `target` when the block ends without an error and removed otherwise (an
    error, a kill -9 leaves only a dot-folder that listings skip). FileExistsError when
    `target` exists by then; with `replace_empty`, an empty one is replaced."""
    temp = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    temp.mkdir(parents=True)
    try:
        yield temp
        if replace_empty and target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target))
        os.rename(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=256)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """Hash of a file version; the key holds its mtime and size, so a rewrite is re-hashed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content, hashed once per version of the file in this process."""
    info = os.stat(path)
    return _file_sha256(str(path), info.st_mtime_ns, info.st_size)


# Process identity: a pid alone can be reused by an unrelated process after a crash; pid and
# start time together name one process. Run owners and sweep drivers are recorded this way.
HAVE_PROC = os.path.exists("/proc/self/stat")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 on (fields[0] is field 3), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces or parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat field 22), or
    None when there is no such process."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])  # field 22


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time process `pid` has used so far, user + system (fields 14 and 15), in seconds;
    None when there is no such process. The measuring scripts read a server's or a run's CPU with it."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def this_process() -> dict:
    """{"pid", "started"}: this process's identity, as process_alive reads it back."""
    return {"pid": os.getpid(), "started": process_start_time(os.getpid())}


def process_alive(identity: dict | None) -> bool:
    """Is the process `identity` names ({"pid", "started"}, as this_process wrote it) still
    running (this one included)? A live pid whose start time differs is another process
    that reused the number."""
    if not identity:
        return False
    if not HAVE_PROC:  # no /proc (macOS): the pid is all there is to go by
        return _pid_alive(identity["pid"])
    started = process_start_time(identity["pid"])
    if started is None:
        return False
    return identity.get("started") is None or identity["started"] == started


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
