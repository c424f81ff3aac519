"""`fmnist models`' listing (name, parameters, description) and `fmnist summary`'s layer
tables, without importing torch each time.

Counting a model's parameters means building it, and importing torch alone takes 2-6 s
here. The listing depends only on the registry's source (models.py, and data.py for the
image size and classes), so it is kept in <runs>/.cache/, named by a hash of that source:
edit a model and the next listing builds them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from fmnist_core.base.errors import UserError
from fmnist_core.base.paths import runs_dir

SOURCES = ("modeling/models.py", "images/data.py")  # under fmnist_core/: what the parameter counts and descriptions are made from
MAX_CACHE_BYTES = 1 << 20  # the listing with its layer tables is ~20 KB; anything larger is not ours
FIELDS = {"name", "params", "description", "summary"}


def _cache_file() -> Path:
    here = Path(__file__).parents[1]  # fmnist_core/
    digest = hashlib.sha256(b"".join((here / name).read_bytes() for name in SOURCES)).hexdigest()[:16]
    return runs_dir() / ".cache" / f"models-{digest}.json"


def _built_listing() -> list[dict]:
    from fmnist_core.modeling.models import count_parameters, create_model, list_models, model_info, summary

    rows = []
    for name in list_models():
        model = create_model(name)
        rows.append({"name": name, "params": count_parameters(model), "description": model_info(name).description,
                     "summary": summary(model)})
    return rows


def model_listing() -> list[dict]:
    """[{name, params, description, summary}] for every registered model, in the registry's order."""
    cache = _cache_file()
    try:
        # Bounded, and never a link or a FIFO (run_files has the general reader, but it imports torch).
        info = os.lstat(cache)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHE_BYTES:
            raise ValueError("not our cache file")
        rows = json.loads(cache.read_bytes())
        if isinstance(rows, list) and all(isinstance(r, dict) and set(r) == FIELDS for r in rows):
            return rows
    except (OSError, ValueError):
        pass  # not built yet, or damaged: build it
    rows = _built_listing()
    try:
        from fmnist_core.base.files import atomic_write_bytes

        atomic_write_bytes(cache, json.dumps(rows).encode())
    except OSError:
        pass  # a read-only run store: the listing is still right, only slower next time
    return rows


def model_summary(name: str) -> str:
    """A registered model's layer table, as `models.summary` prints it, from the same cache."""
    rows = model_listing()
    for row in rows:
        if row["name"] == name:
            return row["summary"]
    raise UserError(f"unknown model '{name}'. Choose one of: {', '.join(r['name'] for r in rows)}")
