"""Reading a run folder's files safely: one schema per file, and only regular files.

Anyone who can write into the run store (another process, a bad copy, a hostile user in
a shared install) can leave valid JSON of the wrong shape, a directory, a FIFO or a
symlink where a run's file should be. Every reader here returns either a value of the
documented shape or None plus one line for `RunRecord.problems`; none raises, and none
opens a FIFO or follows a symlink out of the store.

    run.json       RUN_INFO     {"id": str, "name": str, "created": str, ...}
    config.json    check_config TrainConfig.to_dict(), each setting in its declared range
    result.json    RESULT       {"status": one of RESULT_STATUSES, "message": str, ...}
    history.jsonl  HISTORY_LINE one object per epoch: epoch 1, 2, ... and its figures
    owner.json     OWNER        {"pid": int, "started": int (clock ticks since boot), "starting": bool, "host": str,
                                 "ray_actor": str, "ray_node": str (all four optional; ray_*: a run on a Ray cluster)}
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from fmnist_core.base.statuses import ENDED, RunStatus
from fmnist_core.modeling.config import MAX_SOURCE_LENGTH, RESOLVED_PRECISIONS, SETTINGS, SOURCE_FIELDS, ConfigError

MAX_JSON_BYTES = 1 << 20  # a run's JSON files are a few KB; refuse to read a planted giant
MAX_HISTORY_BYTES = 16 << 20  # 200 epochs are ~100 KB
MAX_LINE_BYTES = 4096  # a line of a run's JSON-lines files is ~100 bytes
RESULT_STATUSES = tuple(status for status in ENDED if status != RunStatus.INTERRUPTED)  # written by a run that ended itself


class FileProblem(Exception):
    """Why a run file cannot be used; the message is one line for RunRecord.problems."""


def open_regular(path: Path):
    """The file opened for reading in binary, or None when it does not exist. Symlinks,
    directories, FIFOs and devices raise FileProblem; a FIFO is never opened."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FileProblem(f"{path.name} cannot be read ({e.strerror})") from e
    if stat.S_ISLNK(info.st_mode):
        raise FileProblem(f"{path.name} is a symbolic link; ignored")
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"{path.name} is not a regular file; ignored")
    try:
        # O_NOFOLLOW and O_NONBLOCK: should the file be swapped for a link or a FIFO since
        # the lstat, the open fails or returns at once instead of following or blocking.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FileProblem(f"{path.name} cannot be read ({e.strerror})") from e
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise FileProblem(f"{path.name} is not a regular file; ignored")
    return f


def read_regular_bytes(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes, at most `limit`, or None when it does not exist. Symlinks,
    directories, FIFOs, devices and oversized files raise FileProblem; a FIFO is never opened."""
    f = open_regular(path)
    if f is None:
        return None
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileProblem(f"{path.name} is larger than {limit // 1024} KB; ignored")
    return data


def read_regular_text(path: Path, limit: int = MAX_JSON_BYTES) -> str | None:
    """read_regular_bytes decoded as UTF-8."""
    data = read_regular_bytes(path, limit)
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise FileProblem(f"{path.name} is not UTF-8 text") from e


def read_regular_tail(path: Path, limit: int) -> tuple[str, str] | None:
    """(first line, the last `limit` bytes' whole lines) of a regular file that only grows
    (a log), or None when it does not exist; at most ~`limit` bytes are read however large
    it is. Raises FileProblem as open_regular does."""
    f = open_regular(path)
    if f is None:
        return None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size <= limit:
            text = f.read(limit).decode(errors="replace")
            head, _, rest = text.partition("\n")
            return head, rest
        head = f.readline(MAX_LINE_BYTES).decode(errors="replace")
        f.seek(size - limit)
        tail = f.read(limit).decode(errors="replace")
    return head.rstrip("\n"), tail.partition("\n")[2]  # the tail's first line is cut: dropped


def is_regular_file(path: Path) -> bool:
    """A regular file, not a symlink to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value) -> bool:
    return isinstance(value, str)


def _or_none(check):
    return lambda value: value is None or check(value)


# {key: (required, check)} per file. Keys not listed are kept as they are: the module that
# writes them (an owner, a sweep id) checks them where it reads them.
RUN_INFO = {"id": (False, _is_text), "name": (False, _is_text), "created": (False, _is_text), "owner": (False, _is_text), "sweep": (False, _or_none(_is_text))}
RESULT = {
    "status": (True, lambda v: v in RESULT_STATUSES), "message": (False, _is_text),
    "epochs_done": (False, _is_count), "seconds": (False, _is_number), "params": (False, _or_none(_is_number)),  # a float (35044.0) in files from before typed summaries
    "train_accuracy": (False, _or_none(_is_number)), "test_accuracy": (False, _or_none(_is_number)),
    "test_loss": (False, _or_none(_is_number)), "train_loss_sum": (False, _or_none(_is_number)),
    "best_test_accuracy": (False, _or_none(_is_number)),
    # fine-tuning (fmnist_core.training.finetune): the starting weights' figures, and the photo set's held-out part
    "start_test_accuracy": (False, _or_none(_is_number)), "start_photo_accuracy": (False, _or_none(_is_number)),
    "photo_accuracy": (False, _or_none(_is_number)),
    # what the run trained on (engine.FitResult.ran_on), so its time can be read fairly
    "device": (False, _is_text), "threads": (False, lambda v: _is_count(v) and v >= 1),
    "precision": (False, lambda v: v in RESOLVED_PRECISIONS),
}
HISTORY_LINE = {
    "epoch": (True, lambda v: _is_count(v) and v >= 1),
    **{key: (True, _is_number) for key in ("train_accuracy", "test_accuracy", "train_loss_sum", "test_loss", "images_per_s")},
    **{key: (False, _is_number) for key in ("train_loss", "seconds", "lr", "elapsed_s", "val_loss", "val_accuracy",
                                           "photo_loss", "photo_accuracy")},
    "batches": (False, _is_count),
}
OWNER = {"pid": (True, lambda v: _is_count(v) and v > 0), "started": (False, _or_none(_is_count)),
         "starting": (False, lambda v: isinstance(v, bool)), "host": (False, _is_text), "ray_actor": (False, _is_text),
         "ray_node": (False, _is_text)}


def check_shape(name: str, value, schema: dict) -> dict:
    """`value` as a dict that satisfies `schema`, or FileProblem naming the first bad key."""
    if not isinstance(value, dict):
        raise FileProblem(f"{name} holds {type(value).__name__ if value is not None else 'null'}, not an object")
    for key, (required, check) in schema.items():
        if key not in value:
            if required:
                raise FileProblem(f"{name} has no '{key}'")
        elif not check(value[key]):
            raise FileProblem(f"{name} has an invalid '{key}' ({_short(value[key])})")
    return dict(value)


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json_file(path: Path, schema: dict) -> dict | None:
    """The file's object, checked against `schema`; None when missing. Raises FileProblem."""
    text = read_regular_text(path)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FileProblem(f"{path.name} is damaged ({e})") from e
    return check_shape(path.name, value, schema)


REQUIRED_CONFIG = ("model", "epochs")  # what every page shows; other settings may predate a version


def check_config(value) -> tuple[dict, list[str]]:
    """A stored config: the settings that are valid kept, each invalid or unknown one
    dropped with a problem (so one bad field does not hide the run's other settings)."""
    if not isinstance(value, dict):
        raise FileProblem(f"config.json holds {type(value).__name__ if value is not None else 'null'}, not an object")
    missing = [key for key in REQUIRED_CONFIG if key not in value]
    if missing:
        raise FileProblem(f"config.json has no '{missing[0]}'")
    kept: dict[str, Any] = {}
    problems: list[str] = []
    for key, item in value.items():
        if key == "extra":
            if isinstance(item, dict):
                kept[key] = item
            continue
        if key in SOURCE_FIELDS:
            if isinstance(item, str) and len(item) <= MAX_SOURCE_LENGTH:
                kept[key] = item
            else:
                problems.append(f"config.json has an invalid '{key}' ({_short(item)}) (ignored)")
            continue
        if key not in SETTINGS:
            problems.append(f"config.json has an unknown setting '{_short(key)}' (ignored)")
            continue
        try:
            SETTINGS[key].check(key, item)
        except ConfigError as e:
            problems.append(f"config.json: {e.message} (ignored)")
            continue
        kept[key] = item
    return kept, problems


def read_config_file(path: Path) -> tuple[dict | None, list[str]]:
    text = read_regular_text(path)
    if text is None:
        return None, []
    try:
        value = json.loads(text)
    except ValueError as e:
        raise FileProblem(f"{path.name} is damaged ({e})") from e
    return check_config(value)


def read_history_file(path: Path) -> tuple[list[dict], list[str]]:
    """Epoch records in order (1, 2, ...). Reading stops at the first line that is cut off,
    of the wrong shape or out of sequence: the epochs before it are kept."""
    text = read_regular_text(path, MAX_HISTORY_BYTES)
    history: list[dict] = []
    if text is None:
        return history, []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = check_shape(f"history.jsonl line {number}", json.loads(line), HISTORY_LINE)
        except ValueError:
            return history, [f"history.jsonl line {number} is damaged (kept the {len(history)} epoch(s) before it)"]
        except FileProblem as e:
            return history, [f"{e} (kept the {len(history)} epoch(s) before it)"]
        if record["epoch"] != len(history) + 1:
            return history, [f"history.jsonl line {number} is epoch {record['epoch']}, expected {len(history) + 1} "
                             f"(kept the {len(history)} epoch(s) before it)"]
        history.append(record)
    return history, []
