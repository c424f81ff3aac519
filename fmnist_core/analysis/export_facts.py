"""A checkpoint's ONNX export, checked against PyTorch, and the facts a model card states about
it, kept in a small file beside the weights.

Why a file: exporting resnet_fm_best and checking it on 1,000 test images took 9.3 s on one core
here (export 5.5 s, check 3.8 s), and the model card needs only the facts: the checksum, the size
and how far the export is from PyTorch. The facts are used only while the weights' SHA-256, the
images checked and the torch and onnx versions all match (another exporter writes other bytes,
so another checksum). A damaged, oversized or non-regular file is ignored and rewritten."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from fmnist_core.base.files import atomic_write_json, file_sha256, sha256
from fmnist_core.base.hardware import plain_torch_version
from fmnist_core.base.paths import is_shipped
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.formats.run_files import FileProblem, read_regular_text
from fmnist_core.images.data import FashionMNIST, normalize
from fmnist_core.use.export import TOLERANCE, ExportCheck, checked_export

FACTS_NAME = "onnx_export.json"
MAX_FACTS_BYTES = 4096


@dataclass(frozen=True)
class OnnxFacts:
    sha256: str
    size_bytes: int
    checked_images: int
    max_difference: float


def checked_onnx(model: nn.Module, data: FashionMNIST, images: int) -> tuple[bytes, ExportCheck]:
    """The model's ONNX bytes, checked on the first `images` test images (export.checked_export)."""
    return checked_export(model, "onnx", normalize(data.test_images[:images]), data.test_labels[:images])


# The exporter's output, by number: bump it when export.py changes the file it writes (its
# metadata text, options). Not a hash of its source, which went stale on every comment.
# tests/core/test_export.py exports a shipped model afresh and compares it with its stored facts.
EXPORT_VERSION = 1


@functools.cache
def _exporter() -> dict:
    """The exporter and the versions that write and run the file: fixed for a process."""
    from importlib.metadata import version

    return {"export_version": EXPORT_VERSION, "torch": plain_torch_version(),
            **{package: version(package) for package in ("onnx", "onnxscript", "onnxruntime")}}


def _key(weights: Path, images: int) -> dict:
    """What the facts depend on: the weights, the images checked, the exporter's own code (its
    metadata text, options) and the versions that write and run the file."""
    return {"weights_sha256": file_sha256(weights), "checked_images": images, **_exporter()}


def _stored(path: Path, key: dict) -> OnnxFacts | None:
    try:
        text = read_regular_text(path, MAX_FACTS_BYTES)
        record = json.loads(text) if text is not None else None
    except (FileProblem, OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("facts"), dict):
        return None
    try:
        facts = OnnxFacts(**record["facts"])
    except TypeError:
        return None
    valid = (isinstance(facts.sha256, str) and len(facts.sha256) == 64 and isinstance(facts.size_bytes, int)
             and facts.checked_images == key["checked_images"] and isinstance(facts.max_difference, float)
             and 0 <= facts.max_difference <= TOLERANCE)
    return facts if valid else None


def onnx_facts(weights: Path, data: FashionMNIST, images: int, onnx: tuple[bytes, ExportCheck] | None = None,
               rebuild_shipped: bool = False) -> OnnxFacts:
    """The facts of the checkpoint's checked ONNX export, from the file beside it when it still
    matches, else exported and checked now (or from `onnx`, an export the caller already checked)
    and written there (skipped where the folder is read-only)."""
    weights = Path(weights)
    key = _key(weights, images)
    path = weights.with_name(FACTS_NAME)
    facts = _stored(path, key) if onnx is None else None  # an export in hand states its own facts
    if facts is not None:
        return facts
    data_bytes, check = onnx or checked_onnx(load_checkpoint(weights).model, data, images)
    facts = OnnxFacts(sha256(data_bytes), len(data_bytes), check.images, check.max_difference)
    if is_shipped(weights) and not rebuild_shipped:
        return facts  # a tracked file: the app never rewrites it, only a rebuild (rebuild_shipped) does
    try:
        atomic_write_json(path, {"key": key, "facts": asdict(facts)})
    except OSError:
        pass  # a read-only folder: computed again next time
    return facts
