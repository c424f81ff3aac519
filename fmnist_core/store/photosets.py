"""Photo sets: a user's own labelled photos, kept in the store and measured.

A photo set is a folder `<runs>/.photosets/<name>/`:
    labels.json   LABELS: the set's name, owner, visibility, creation time, content hash
                  and one entry per photo {file, label, split, sha256, source}
    images/       the photos, named 00000.png, 00001.jpg, ... (the bytes as uploaded when
                  their format is one we read, else re-encoded as PNG)
It is imported from a folder or a zip laid out one subfolder per class (torchvision's
ImageFolder convention: the ten class names, case and punctuation ignored, or 0-9), or
from photos labelled one by one (the Predict page's table). Everything is checked before
anything is kept: the set is built in a hidden temp folder and renamed into place, so a
refused import leaves nothing behind.

The content hash covers the photos' bytes and their labels (not the owner or the
visibility). Each set has a fixed train / held-out split, stratified per class and drawn
from that hash, so the same photos always split the same way; fine-tuning trains on the
train part and reports the held-out part.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fmnist_core.analysis.metrics import Analysis, confusion_matrix
from fmnist_core.base import paths
from fmnist_core.base.errors import UserError
from fmnist_core.base.files import atomic_folder, atomic_write_json, sha256
from fmnist_core.formats.run_files import FileProblem, check_shape, read_regular_bytes, read_regular_text
from fmnist_core.images.data import CLASSES, normalize
from fmnist_core.modeling.config import SETTINGS, ConfigError
from fmnist_core.store.access import LimitError, NotAllowed, Policy, Visitor
from fmnist_core.use.inference import MAX_IMAGE_BYTES, ImageError, open_image, to_model_input
from fmnist_core.use.scoring import predict_dataset

PHOTOSETS_DIR = ".photosets"  # under the runs folder; hidden, so the run store never lists it
LABELS_NAME = "labels.json"
IMAGES_DIR = "images"
HELDOUT_FRACTION = 0.3  # of each class, held out from fine-tuning
# Local mode's limits (one person on their own machine); shared mode's are access.Limits,
# never above these.
MAX_FILES = 10_000
MAX_BYTES = 2 * 2**30
MAX_LABELS_BYTES = MAX_FILES * 400  # an entry of labels.json is ~200 bytes
MAX_SOURCE_CHARS = 200  # of a photo's path in the folder or zip it came from, kept for display
# The formats kept as uploaded, and their file extensions; anything else Pillow reads is
# re-encoded as PNG.
KEPT_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tiff"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]*[A-Za-z0-9_-])?")
FILE_PATTERN = re.compile(r"\d{5}\.(?:" + "|".join(KEPT_FORMATS.values()) + ")")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
SPLITS = ("train", "heldout")
IGNORED_NAMES = ("__MACOSX",)  # macOS's zip tool adds it beside the real folders


class PhotoSetError(UserError):
    """A photo set that cannot be added, read or changed; one line that says why."""


# ---- class folders --------------------------------------------------------------------------


def _folded(text: str) -> str:
    """'T-shirt/top' -> 'tshirttop', 'Ankle boot' -> 'ankleboot': case and punctuation ignored."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


# A folder name cannot hold the '/' of 'T-shirt/top'; 'tshirt' is what people write.
CLASS_FOLDERS = {**{_folded(name): i for i, name in enumerate(CLASSES)}, **{str(i): i for i in range(len(CLASSES))}, "tshirt": 0}
FOLDER_HINT = "name each class folder after its class (e.g. Trouser, Ankle_boot, tshirt) or its index 0-9"


def class_of_folder(name: str) -> int | None:
    """The class index a folder name stands for, or None."""
    return CLASS_FOLDERS.get(_folded(name))


# ---- names and limits -------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A set's name, stripped; a name that cannot be a folder of the store is one PhotoSetError."""
    name = name.strip()
    if not name:
        raise PhotoSetError("a photo set needs a name")
    try:
        SETTINGS["name"].check("name", name)  # the one length cap of names: config.MAX_NAME_LENGTH
    except ConfigError as e:
        raise PhotoSetError(f"the name {e.message}") from None
    if not NAME_PATTERN.fullmatch(name):
        raise PhotoSetError(f"the name {json.dumps(name)} cannot be used: use letters, digits, spaces, '.', '_' and '-', "
                            "starting with a letter or digit")
    return name


@dataclass(frozen=True)
class PhotoLimits:
    files: int = MAX_FILES  # photos in one set
    bytes: int = MAX_BYTES  # their bytes together
    sets_per_visitor: int | None = None  # None: no limit

    @classmethod
    def of(cls, policy: Policy) -> PhotoLimits:
        """Local mode: this module's caps; shared mode: the server's limits (access.Limits)."""
        if not policy.shared:
            return cls()
        limits = policy.limits
        return cls(min(limits.files_per_photoset, MAX_FILES), min(limits.bytes_per_photoset, MAX_BYTES), limits.photosets_per_visitor)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _too_many(limits: PhotoLimits) -> PhotoSetError:
    return PhotoSetError(f"more than {limits.files:,} files: a photo set holds at most {limits.files:,}")


def _too_large(limits: PhotoLimits) -> PhotoSetError:
    return PhotoSetError(f"the photos are larger than {_size(limits.bytes)} together, the most a photo set may hold")


def _image_too_large(source: str) -> PhotoSetError:
    return PhotoSetError(f"{source} is larger than the {_size(MAX_IMAGE_BYTES)} limit for images")


# ---- the stored file ----------------------------------------------------------------------


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_item(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("file"), str) and FILE_PATTERN.fullmatch(value["file"]) is not None
            and type(value.get("label")) is int and 0 <= value["label"] < len(CLASSES)
            and value.get("split") in SPLITS and isinstance(value.get("sha256"), str)
            and SHA256_PATTERN.fullmatch(value["sha256"]) is not None and isinstance(value.get("source"), str))


LABELS = {
    "name": (True, _is_text), "owner": (True, _is_text), "public": (True, lambda v: isinstance(v, bool)),
    "created": (False, _is_text), "sha256": (True, lambda v: isinstance(v, str) and SHA256_PATTERN.fullmatch(v) is not None),
    "heldout_fraction": (False, lambda v: isinstance(v, float) and 0 <= v < 1),
    "items": (True, lambda v: isinstance(v, list) and 0 < len(v) <= MAX_FILES and all(map(_is_item, v))),
}


@dataclass
class PhotoSet:
    """A set as read back from the store; `problems` (a damaged labels file) means it has no items."""

    name: str
    path: Path
    owner: str = ""
    public: bool = False
    created: str = ""
    sha256: str = ""
    items: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def heldout(self) -> np.ndarray:
        """(N,) True for the photos of the held-out part."""
        return np.array([item["split"] == "heldout" for item in self.items], dtype=bool)

    def counts(self) -> list[tuple[int, int]]:
        """(train, held-out) photos of each class, in CLASSES order."""
        out = [[0, 0] for _ in CLASSES]
        for item in self.items:
            out[item["label"]][item["split"] == "heldout"] += 1
        return [(a, b) for a, b in out]

    def describe(self) -> str:
        """'120 photos of 6 classes (84 train, 36 held out)'."""
        held = int(self.heldout.sum())
        classes = len({item["label"] for item in self.items})
        return f"{len(self.items)} photos of {classes} class{'es' if classes != 1 else ''} ({len(self.items) - held} train, {held} held out)"


def content_hash(entries: list[tuple[int, str]]) -> str:
    """SHA-256 of the (label, photo SHA-256) pairs, in any order: what the set holds."""
    lines = sorted(f"{label}:{digest}\n" for label, digest in entries)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def fixed_split(entries: list[tuple[int, str]], set_hash: str, fraction: float = HELDOUT_FRACTION) -> list[str]:
    """'train' or 'heldout' per entry: of each class, round(fraction * n) photos held out,
    the ones first in an order drawn from the set's hash (so the split is fixed per set)."""
    splits = ["train"] * len(entries)
    for label in sorted({label for label, _ in entries}):
        members = [i for i, (lab, _) in enumerate(entries) if lab == label]
        members.sort(key=lambda i: hashlib.sha256(f"{set_hash}:{entries[i][1]}".encode()).hexdigest())
        for i in members[: int(len(members) * fraction + 0.5)]:
            splits[i] = "heldout"
    return splits


# ---- where photos come from: a folder, a zip, or labelled uploads --------------------------------


@dataclass(frozen=True)
class Candidate:
    """One photo to import: where it came from (for messages), its class, and its bytes
    (read when it is validated, one photo in memory at a time)."""

    source: str
    label: int
    read: Callable[[], bytes]


def _ignored(part: str) -> bool:
    return part.startswith(".") or part in IGNORED_NAMES


def _classify(files: list[tuple[tuple[str, ...], Callable[[], bytes]]]) -> list[Candidate]:
    """(path parts, reader) of every file -> candidates with their class from the first
    folder. A single wrapping folder that is not a class ('my_photos/Trouser/a.jpg') is skipped."""
    while files and all(len(parts) > 1 for parts, _ in files) and len({parts[0] for parts, _ in files}) == 1 \
            and class_of_folder(files[0][0][0]) is None:
        files = [(parts[1:], read) for parts, read in files]
    out = []
    for parts, read in files:
        source = "/".join(parts)
        if len(parts) == 1:
            raise PhotoSetError(f"{source} is not in a class folder: {FOLDER_HINT}")
        label = class_of_folder(parts[0])
        if label is None:
            raise PhotoSetError(f"unknown class folder {json.dumps(parts[0])}: {FOLDER_HINT}")
        out.append(Candidate(source, label, read))
    return out


def _file_reader(path: Path, source: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            data = read_regular_bytes(path, MAX_IMAGE_BYTES)  # no link followed, no FIFO opened, even if swapped in since the walk
        except FileProblem as e:
            raise PhotoSetError(f"{source} cannot be read: {e}") from None
        if data is None:
            raise PhotoSetError(f"{source} disappeared while the set was being added")
        return data
    return read


def folder_candidates(folder: Path, limits: PhotoLimits) -> list[Candidate]:
    """Every photo under `folder` (one subfolder per class), checked for links, special files and
    the limits as it is walked: a folder of 100,000 files stops at the first one over."""
    files: list[tuple[tuple[str, ...], Callable[[], bytes]]] = []
    total = scanned = 0

    def walk(directory: Path, parts: tuple[str, ...]) -> None:
        nonlocal total
        nonlocal scanned
        try:
            entries = os.scandir(directory)
        except OSError as e:
            raise PhotoSetError(f"cannot read the folder {'/'.join(parts) or directory}: {e.strerror}") from e
        for entry in entries:  # not sorted: a folder of a million files is refused without listing it whole
            scanned += 1
            if scanned > _entry_bound(limits):
                raise _too_many(limits)
            if _ignored(entry.name):
                continue
            where = "/".join((*parts, entry.name))
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise PhotoSetError(f"{where} is a symbolic link: copy the photo itself into the folder")
            if stat.S_ISDIR(info.st_mode):
                walk(Path(entry.path), (*parts, entry.name))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise PhotoSetError(f"{where} is not a regular file (a pipe, socket or device)")
            if len(files) >= limits.files:
                raise _too_many(limits)
            if info.st_size > MAX_IMAGE_BYTES:
                raise _image_too_large(where)
            total += info.st_size
            if total > limits.bytes:
                raise _too_large(limits)
            files.append(((*parts, entry.name), _file_reader(Path(entry.path), where)))

    walk(folder, ())
    return _classify(files)


def _entry_bound(limits: PhotoLimits) -> int:
    """Entries of a folder or zip looked at before giving up: hidden files and folders count
    too (a macOS zip has a __MACOSX/._x twin of every photo), so a few times the file limit."""
    return 4 * limits.files + 100


def open_zip(archive: bytes | Path, limits: PhotoLimits) -> zipfile.ZipFile:
    """A zip whose entry count, read from its end record, is within bounds: zipfile parses
    the whole directory on opening, and a crafted one of millions of entries would fill memory."""
    try:
        with (io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 16) - 22))  # the end record: 22 bytes and a comment of up to 64 KB
            tail = f.read()
        end = tail.rfind(b"PK\x05\x06")
        if end >= 0 and len(tail) >= end + 12:
            entries = int.from_bytes(tail[end + 10 : end + 12], "little")  # 0xFFFF: Zip64, i.e. 65,535 or more
            if entries > _entry_bound(limits):
                raise _too_many(limits)
        return zipfile.ZipFile(io.BytesIO(archive) if isinstance(archive, bytes) else archive)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise PhotoSetError(f"not a zip file that can be read ({e})") from e


def zip_candidates(zf: zipfile.ZipFile, limits: PhotoLimits) -> list[Candidate]:
    """Every photo of a zip (one folder per class), checked from its directory before any is
    unpacked: unsafe paths (absolute, '..'), links, too many files or bytes. Nothing is
    extracted to disk; each photo is read into memory, bounded by its declared size."""
    files: list[tuple[tuple[str, ...], Callable[[], bytes]]] = []
    total = 0
    for info in zf.infolist():
        name = info.filename
        parts = tuple(name.split("/"))
        if name.startswith("/") or "\\" in name or ".." in parts or re.match(r"[A-Za-z]:", name):
            raise PhotoSetError(f"the zip holds an unsafe path {json.dumps(name[:80])}: refused")
        if (info.external_attr >> 16) and stat.S_ISLNK(info.external_attr >> 16):
            raise PhotoSetError(f"{name} in the zip is a symbolic link: zip the photos themselves")
        if info.is_dir() or any(_ignored(p) for p in parts if p):
            continue
        if info.flag_bits & 0x1:
            raise PhotoSetError(f"{name} in the zip is encrypted: zip the photos without a password")
        if len(files) >= limits.files:
            raise _too_many(limits)
        total += info.file_size
        if total > limits.bytes:
            raise _too_large(limits)
        if info.file_size > MAX_IMAGE_BYTES:
            raise _image_too_large(f"{name} in the zip")
        files.append((tuple(p for p in parts if p), _zip_reader(zf, info)))
    return _classify(files)


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zf.open(info) as f:
                data = f.read(info.file_size + 1)  # a header that lies about the size cannot make us read more
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, NotImplementedError) as e:
            raise PhotoSetError(f"{info.filename} in the zip cannot be unpacked ({e})") from e
        if len(data) != info.file_size:
            raise PhotoSetError(f"{info.filename} in the zip is damaged (its size differs from the zip's directory)")
        return data
    return read


def _reader_of(data: bytes) -> Callable[[], bytes]:
    """Candidate.read for bytes already in memory (a function of its own, so each photo keeps its bytes)."""
    return lambda: data


def labelled_candidates(photos: list[tuple[str, bytes, int | str]], limits: PhotoLimits) -> list[Candidate]:
    """Photos labelled one by one: (file name, bytes, class index or name)."""
    if len(photos) > limits.files:
        raise PhotoSetError(f"{len(photos):,} photos: a photo set holds at most {limits.files:,}")
    if sum(len(data) for _, data, _ in photos) > limits.bytes:
        raise _too_large(limits)
    out = []
    for source, data, label in photos:
        index = label if isinstance(label, int) and 0 <= label < len(CLASSES) else class_of_folder(str(label))
        if index is None:
            raise PhotoSetError(f"{source}: give it a class (one of {', '.join(CLASSES)})")
        out.append(Candidate(source, index, _reader_of(data)))
    return out


# ---- the store ------------------------------------------------------------------------------


def _validated(candidate: Candidate) -> tuple[bytes, str]:
    """(bytes to keep, extension) of a photo that decodes and shows an item; else PhotoSetError."""
    data = candidate.read()
    try:
        image = open_image(data)
        to_model_input(image)  # an empty surface would be a photo with nothing to classify
        kind = Image.open(io.BytesIO(data)).format  # the header only
    except ImageError as e:
        raise PhotoSetError(f"{candidate.source}: {e}") from None
    if kind in KEPT_FORMATS:
        return data, KEPT_FORMATS[kind]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def validated_photos(candidates: list[Candidate]) -> Iterator[tuple[Candidate, bytes, str, str]]:
    """(candidate, bytes to keep, extension, SHA-256) per photo, in a fixed order; PhotoSetError
    at the first photo that cannot be read or repeats another's bytes."""
    seen: dict[str, str] = {}
    for candidate in sorted(candidates, key=lambda c: (c.label, c.source)):
        data, extension = _validated(candidate)
        digest = sha256(data)
        if digest in seen:
            raise PhotoSetError(f"{candidate.source} and {seen[digest]} are the same photo (same bytes): keep one")
        seen[digest] = candidate.source
        yield candidate, data, extension, digest


class PhotoSetStore:
    """Photo sets under `root` (default: <runs>/.photosets)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else paths.runs_dir() / PHOTOSETS_DIR

    # ---- reading ----

    def names(self) -> list[str]:
        """Set folders, sorted; hidden entries (temp folders of an import) are skipped."""
        try:
            return sorted(e.name for e in os.scandir(self.root) if not e.name.startswith("."))
        except OSError:
            return []

    def read(self, name: str) -> PhotoSet:
        """The set as stored. Never raises: a bad labels file or folder is a line in `problems`."""
        path = self.root / name
        photoset = PhotoSet(name, path)
        if os.path.islink(path) or not path.is_dir():
            photoset.problems.append("is not a photo set folder (a link or a file); ignored")
            return photoset
        try:
            text = read_regular_text(path / LABELS_NAME, MAX_LABELS_BYTES)
            if text is None:
                raise FileProblem(f"{LABELS_NAME} is missing")
            try:
                value = json.loads(text)
            except ValueError as e:
                raise FileProblem(f"{LABELS_NAME} is damaged ({e})") from e
            info = check_shape(LABELS_NAME, value, LABELS)
        except FileProblem as e:
            photoset.problems.append(str(e))
            return photoset
        return PhotoSet(name, path, info["owner"], info["public"], info.get("created", ""), info["sha256"], info["items"])

    def list(self) -> list[PhotoSet]:
        return [self.read(name) for name in self.names()]

    def visible(self, visitor: Visitor, policy: Policy) -> builtins.list[PhotoSet]:
        """The sets `visitor` may see: their own, public ones, and all of them for an admin
        (damaged ones included: their owner is unknown, so only an admin sees those)."""
        return [s for s in self.list() if policy.can_modify(visitor, s.owner) or (s.public and not s.problems)]

    def get(self, name: str, visitor: Visitor | None = None, policy: Policy | None = None) -> PhotoSet:
        """A set that exists, is readable and `visitor` may see; else one PhotoSetError."""
        policy = policy or Policy()
        visitor = visitor or policy.local_visitor()
        photoset = self.read(name) if name in self.names() else None
        if photoset is None or not (policy.can_modify(visitor, photoset.owner) or photoset.public):
            known = ", ".join(s.name for s in self.visible(visitor, policy)) or "none yet"
            raise PhotoSetError(f"there is no photo set {json.dumps(name)} (photo sets: {known})")
        if photoset.problems:
            raise PhotoSetError(f"photo set {json.dumps(name)} cannot be used: {photoset.problems[0]}")
        return photoset

    # ---- adding ----

    def add_folder(self, name: str, source: Path | str, visitor: Visitor | None = None, policy: Policy | None = None,
                   public: bool = False) -> PhotoSet:
        """Import a folder or a .zip file (one subfolder per class)."""
        name, visitor, limits = self._allowed(name, visitor, policy)
        source = Path(source)
        try:
            kind = os.stat(source).st_mode
        except OSError as e:
            raise PhotoSetError(f"cannot read {source}: {e.strerror}") from e
        if stat.S_ISDIR(kind):
            return self._build(name, folder_candidates(source, limits), visitor, public)
        if not stat.S_ISREG(kind):
            raise PhotoSetError(f"{source} is neither a folder nor a zip file")
        with open_zip(source, limits) as zf:
            return self._build(name, zip_candidates(zf, limits), visitor, public)

    def add_zip(self, name: str, archive: bytes, visitor: Visitor | None = None, policy: Policy | None = None,
                public: bool = False) -> PhotoSet:
        """Import an uploaded zip's bytes."""
        name, visitor, limits = self._allowed(name, visitor, policy)
        with open_zip(archive, limits) as zf:
            return self._build(name, zip_candidates(zf, limits), visitor, public)

    def add_photos(self, name: str, photos: builtins.list[tuple[str, bytes, int | str]], visitor: Visitor | None = None,
                   policy: Policy | None = None, public: bool = False) -> PhotoSet:
        """Import photos labelled one by one: (file name, bytes, class index or name)."""
        name, visitor, limits = self._allowed(name, visitor, policy)
        return self._build(name, labelled_candidates(photos, limits), visitor, public)

    def _allowed(self, name: str, visitor: Visitor | None, policy: Policy | None) -> tuple[str, Visitor, PhotoLimits]:
        """Checks that need no photo: the name (returned stripped), a free folder, the visitor's number of sets."""
        policy = policy or Policy()
        visitor = visitor or policy.local_visitor()
        name = check_name(name)
        if os.path.lexists(self.root / name):
            raise PhotoSetError(f"a photo set named {json.dumps(name)} exists: delete it first or pick another name")
        limits = PhotoLimits.of(policy)
        owned = sum(s.owner == visitor.id for s in self.list())
        if limits.sets_per_visitor is not None and owned >= limits.sets_per_visitor:
            raise LimitError(f"you already have {owned} photo sets, the most this server allows per visitor: delete one first")
        return name, visitor, limits

    def _build(self, name: str, candidates: builtins.list[Candidate], visitor: Visitor, public: bool) -> PhotoSet:
        """Validate every photo into a hidden temp folder, then rename it into place."""
        if not candidates:
            raise PhotoSetError(f"the photo set is empty: put photos in class folders ({FOLDER_HINT})")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_folder(self.root / name) as temp:
                _write_set(temp, name, candidates, visitor, public)
        except FileExistsError:  # another import took the name meanwhile
            raise PhotoSetError(f"a photo set named {json.dumps(name)} exists: delete it first or pick another name") from None
        except OSError as e:
            raise PhotoSetError(f"cannot write the photo set: {e.strerror or e}") from e
        return self.read(name)

    # ---- changing ----

    def delete(self, name: str, visitor: Visitor | None = None, policy: Policy | None = None) -> None:
        """Remove a set for good; only its owner or an admin may."""
        photoset = self._owned(name, visitor, policy, "delete")
        hidden = self.root / f".deleted-{secrets.token_hex(4)}"
        os.rename(photoset.path, hidden)  # gone from the list at once, even if the removal is slow
        shutil.rmtree(hidden, ignore_errors=True)

    def set_public(self, name: str, public: bool, visitor: Visitor | None = None, policy: Policy | None = None) -> None:
        """Let every visitor see the set (public) or only its owner and admins (private)."""
        photoset = self._owned(name, visitor, policy, "change")
        info = check_shape(LABELS_NAME, json.loads(read_regular_text(photoset.path / LABELS_NAME, MAX_LABELS_BYTES) or "{}"), LABELS)
        atomic_write_json(photoset.path / LABELS_NAME, {**info, "public": bool(public)})

    def _owned(self, name: str, visitor: Visitor | None, policy: Policy | None, action: str) -> PhotoSet:
        policy = policy or Policy()
        visitor = visitor or policy.local_visitor()
        if name not in self.names():
            raise PhotoSetError(f"there is no photo set {json.dumps(name)}")
        photoset = self.read(name)
        if not policy.can_modify(visitor, photoset.owner):
            raise NotAllowed(f"you cannot {action} this photo set: only the visitor who added it or an admin can")
        return photoset


# ---- what a model sees, and how it does --------------------------------------------------------


@dataclass(frozen=True)
class PhotoInputs:
    """A set's photos as the model sees them."""

    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64
    heldout: np.ndarray  # (N,) bool
    sources: tuple[str, ...]  # where each photo came from, for captions


def model_inputs(photoset: PhotoSet) -> PhotoInputs:
    """The set's photos through inference.to_model_input, computed once per content hash."""
    if photoset.problems or not photoset.items:
        raise PhotoSetError(f"photo set {json.dumps(photoset.name)} cannot be used: {(photoset.problems or ['it is empty'])[0]}")
    return _inputs(photoset.sha256, str(photoset.path), json.dumps(photoset.items))


@lru_cache(maxsize=8)
def _inputs(set_sha256: str, folder: str, items_json: str) -> PhotoInputs:
    """The photos of one version of a set (`set_sha256`: its content hash, the cache key)."""
    items = json.loads(items_json)
    images = []
    for item in items:
        path = Path(folder) / IMAGES_DIR / item["file"]
        try:
            data = read_regular_bytes(path, MAX_IMAGE_BYTES)
        except FileProblem as e:
            raise PhotoSetError(f"photo {item['file']} ({item['source']}): {e}") from None
        if data is None or sha256(data) != item["sha256"]:
            raise PhotoSetError(f"photo {item['file']} ({item['source']}) is missing or changed since the set was added; add the set again")
        try:
            images.append(to_model_input(open_image(data)))
        except ImageError as e:
            raise PhotoSetError(f"photo {item['file']} ({item['source']}): {e}") from None
    labels = np.array([item["label"] for item in items], dtype=np.int64)
    heldout = np.array([item["split"] == "heldout" for item in items], dtype=bool)
    return PhotoInputs(np.stack(images), labels, heldout, tuple(item["source"] for item in items))


@dataclass(frozen=True)
class WrongPhoto:
    index: int  # in the set
    true: int
    predicted: int
    probability: float  # of the predicted class
    seen: np.ndarray  # (28, 28) uint8: what the model saw
    source: str


@dataclass(frozen=True)
class PhotoSetScore:
    """A model on a photo set: overall, on the held-out part, per class, and its mistakes."""

    accuracy: float  # percent, all photos
    heldout_accuracy: float | None  # percent, the held-out part (None when it is empty)
    matrix: list[list[int]]  # [true][predicted]
    per_class: list[float]  # percent; NaN for a class the set does not have
    wrong: list[WrongPhoto]  # most confident first
    count: int

    def to_dict(self) -> dict:
        """Plain JSON (NaN -> null), without the pictures."""
        return {"accuracy": self.accuracy, "heldout_accuracy": self.heldout_accuracy, "photos": self.count,
                "per_class_accuracy": {c: (None if v != v else v) for c, v in zip(CLASSES, self.per_class)},
                "confusion_matrix": self.matrix,
                "wrong": [{"index": w.index, "source": w.source, "true": CLASSES[w.true], "predicted": CLASSES[w.predicted],
                           "probability": w.probability} for w in self.wrong]}


def evaluate_on_photoset(model: nn.Module, photoset: PhotoSet) -> PhotoSetScore:
    """The model's accuracy, confusion matrix, per-class accuracy and wrong photos on a set."""
    inputs = model_inputs(photoset)
    probabilities = predict_dataset(model, normalize(torch.from_numpy(inputs.images))).numpy()  # (N, 10)
    analysis = Analysis(inputs.labels, probabilities, confusion_matrix(inputs.labels, probabilities.argmax(1)))
    predicted = analysis.predictions
    right = predicted == inputs.labels
    heldout = float(100.0 * right[inputs.heldout].mean()) if inputs.heldout.any() else None
    wrong = [int(i) for i in np.flatnonzero(~right)]
    wrong.sort(key=lambda i: -probabilities[i, predicted[i]])
    return PhotoSetScore(analysis.accuracy, heldout, analysis.matrix, analysis.per_class_accuracy,
                         [WrongPhoto(i, int(inputs.labels[i]), int(predicted[i]), float(probabilities[i, predicted[i]]),
                                     inputs.images[i], inputs.sources[i]) for i in wrong], len(inputs.labels))


def original_photo(photoset: PhotoSet, index: int) -> bytes:
    """The stored bytes of photo `index`, read as model_inputs reads them (b"" when unreadable)."""
    try:
        return read_regular_bytes(photoset.path / IMAGES_DIR / photoset.items[index]["file"], MAX_IMAGE_BYTES) or b""
    except FileProblem:
        return b""


def _write_set(folder: Path, name: str, candidates: list[Candidate], visitor: Visitor, public: bool) -> None:
    """Every photo, validated, and the labels file into `folder` (a temporary one: PhotoSetStore._build)."""
    (folder / IMAGES_DIR).mkdir()
    stored: list[dict[str, Any]] = []
    for candidate, data, extension, digest in validated_photos(candidates):
        file = f"{len(stored):05d}.{extension}"
        (folder / IMAGES_DIR / file).write_bytes(data)
        stored.append({"file": file, "label": candidate.label, "sha256": digest, "source": candidate.source[-MAX_SOURCE_CHARS:]})
    entries = [(item["label"], item["sha256"]) for item in stored]
    set_hash = content_hash(entries)
    for item, split in zip(stored, fixed_split(entries, set_hash)):
        item["split"] = split
    labels = {"name": name, "owner": visitor.id, "public": bool(public),
              "created": datetime.now(UTC).isoformat(timespec="seconds"), "sha256": set_hash,
              "heldout_fraction": HELDOUT_FRACTION, "items": stored}
    check_shape(LABELS_NAME, labels, LABELS)  # what is written is what every read accepts
    atomic_write_json(folder / LABELS_NAME, labels)
