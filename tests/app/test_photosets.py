"""Photo sets (fmnist_core.store.photosets): import from a folder, a zip or labelled uploads, every
bad input refused in one line with nothing written, the fixed split, the round trip through
the CLI with a shipped model, shared mode's owners and limits, and a fuzz of the stored files."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from fmnist_core.base.errors import UserError
from fmnist_core.commands import cli
from fmnist_core.formats.checkpoint import load_checkpoint
from fmnist_core.images.data import CLASSES
from fmnist_core.modeling.config import MAX_NAME_LENGTH
from fmnist_core.store.access import LimitError, Limits, NotAllowed, Policy
from fmnist_core.store.photosets import (
    LABELS_NAME,
    MAX_LABELS_BYTES,
    PhotoSetError,
    PhotoSetStore,
    class_of_folder,
    evaluate_on_photoset,
    model_inputs,
)
from fmnist_core.use.inference import MAX_IMAGE_BYTES, to_model_input
from tests.helpers.pages import frame_with, open_tab, run_app
from tests.helpers.paths import APP, ROOT

PRETRAINED = ROOT / "checkpoints" / "pretrained"
FOLDER_NAMES = ["T-shirt_top", "trouser", "2", "Dress", "COAT", "sandal", "Shirt", "sneaker", "bag", "Ankle boot"]  # every accepted way


def photo_bytes(image28: np.ndarray, fmt: str = "PNG", size: int = 112) -> bytes:
    """A test-set item as a product photo: dark item on white, upscaled, saved as `fmt`."""
    picture = Image.fromarray(255 - image28).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def drawn_photo(seed: int) -> bytes:
    """A small photo drawn with PIL (a grey rectangle on white) for tests that need no data set."""
    image = Image.new("L", (64, 64), 255)
    image.paste(40 + seed % 150, (10 + seed % 7, 8, 50, 56))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_folder(root: Path, items: list[tuple[int, bytes, str]]) -> Path:
    """root/<class folder>/<name> for (label, bytes, name)."""
    for label, data, name in items:
        folder = root / FOLDER_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return root


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def test_photos(real_data) -> list[tuple[int, bytes, str]]:
    """60 test-set items (6 per class) as photos, half PNG and half JPEG."""
    labels = real_data.test_labels.numpy()
    chosen = [int(i) for c in range(10) for i in np.flatnonzero(labels == c)[:6]]
    return [(int(labels[i]), photo_bytes(real_data.test_images[i].numpy(), "PNG" if k % 2 else "JPEG"), f"{i}.{'png' if k % 2 else 'jpg'}")
            for k, i in enumerate(chosen)]


@pytest.fixture
def store(tmp_path) -> PhotoSetStore:
    return PhotoSetStore(tmp_path / "runs" / ".photosets")


def nothing_written(store: PhotoSetStore) -> bool:
    return not store.root.exists() or not any(store.root.iterdir())


# ---- bad input: one line, nothing written ---------------------------------------------------------


def refused(store: PhotoSetStore, add, *words: str) -> str:
    with pytest.raises(UserError) as caught:
        add()
    message = str(caught.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert nothing_written(store), list(store.root.iterdir())
    return message


def test_unknown_class_folder(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    (tmp_path / "src" / "Shoes").mkdir()
    (tmp_path / "src" / "Shoes" / "b.png").write_bytes(drawn_photo(2))
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), 'unknown class folder "Shoes"', "0-9")


def test_photo_outside_a_class_folder(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    (tmp_path / "src" / "loose.png").write_bytes(drawn_photo(2))
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "loose.png is not in a class folder")


def test_unreadable_image_is_named(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (3, b"\x89PNG\r\n\x1a\nnot really", "broken.png")])
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "Dress/broken.png", "damaged")


def test_blank_photo_is_refused(store, tmp_path):
    white = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(white, format="PNG")
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (1, white.getvalue(), "empty.png")])
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "trouser/empty.png", "nothing to classify")


def test_duplicate_photos(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (8, drawn_photo(1), "copy.png")])
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "bag/copy.png", "trouser/a.png", "same photo")


def test_empty_set(store, tmp_path):
    (tmp_path / "src" / "Trouser").mkdir(parents=True)
    (tmp_path / "src" / "Trouser" / ".DS_Store").write_bytes(b"x")  # hidden files are not photos
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "the photo set is empty")
    refused(store, lambda: store.add_zip("set", zip_of({})), "the photo set is empty")


def test_too_many_files_and_bytes_are_the_servers_limits(store, tmp_path):
    policy = Policy.from_settings("shared", {"limits": {"files_per_photoset": 3, "bytes_per_photoset": 1000}})
    make_folder(tmp_path / "many", [(i % 10, drawn_photo(i), f"{i}.png") for i in range(4)])
    refused(store, lambda: store.add_folder("set", tmp_path / "many", policy=policy), "more than 3 files", "at most 3")
    make_folder(tmp_path / "big", [(1, drawn_photo(1) + b"\0" * 600, "a.png"), (2, drawn_photo(2) + b"\0" * 600, "b.png")])
    refused(store, lambda: store.add_folder("set", tmp_path / "big", policy=policy), "larger than 1 KB together")
    refused(store, lambda: store.add_zip("set", zip_of({f"Bag/{i}.png": drawn_photo(i) for i in range(4)}), policy=policy),
            "more than 3 files")
    photos = [(f"{i}.png", drawn_photo(i), "Bag") for i in range(4)]
    refused(store, lambda: store.add_photos("set", photos, policy=policy), "4 photos", "at most 3")


def test_a_photo_over_the_image_limit_is_refused_by_its_size(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    with open(tmp_path / "src" / "trouser" / "huge.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # sparse: 50 MB on paper, nothing on disk; never read
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "trouser/huge.png is larger than the 50 MB limit for images")


def test_a_zip_of_a_million_entries_is_refused_from_its_end_record(store):
    """The entry count is read from the zip's last 22 bytes, before zipfile parses the directory."""
    archive = bytearray(zip_of({"Bag/a.png": drawn_photo(1)}))
    end = archive.rfind(b"PK\x05\x06")
    archive[end + 8 : end + 12] = (0xFFFF).to_bytes(2, "little") * 2  # entries on this disk, in all
    refused(store, lambda: store.add_zip("set", bytes(archive)), "more than 10,000 files")


def test_zip_bomb_is_refused_before_it_is_unpacked(store):
    policy = Policy.from_settings("shared", {"limits": {"bytes_per_photoset": 10 * 2**20}})
    bomb = zip_of({"Bag/bomb.png": b"\0" * (100 * 2**20)})  # 100 MB of zeros in ~100 KB
    assert len(bomb) < 2**20
    refused(store, lambda: store.add_zip("set", bomb, policy=policy), "larger than 10 MB together")


def test_a_zip_that_lies_about_a_size_is_read_no_further(store):
    data = drawn_photo(1) + b"\0" * 50_000
    archive = bytearray(zip_of({"Bag/a.png": data}))
    declared = len(data).to_bytes(4, "little")
    assert archive.count(declared) == 2  # the local header and the central directory
    archive[:] = archive.replace(declared, (100).to_bytes(4, "little"))
    refused(store, lambda: store.add_zip("set", bytes(archive)), "Bag/a.png")


@pytest.mark.parametrize("name", ["../evil.png", "Bag/../../evil.png", "/etc/Bag/a.png", "Bag\\..\\a.png", "C:/Bag/a.png"])
def test_unsafe_paths_in_a_zip(store, name, tmp_path):
    refused(store, lambda: store.add_zip("set", zip_of({"Bag/ok.png": drawn_photo(1), name: drawn_photo(2)})), "unsafe path")
    assert not (tmp_path / "runs" / "evil.png").exists() and not (tmp_path / "evil.png").exists()


def test_symlinks_are_refused(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    (tmp_path / "src" / "trouser" / "link.png").symlink_to(tmp_path / "src" / "trouser" / "a.png")
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "trouser/link.png is a symbolic link")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("Bag/a.png", drawn_photo(1))
        link = zipfile.ZipInfo("Bag/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    refused(store, lambda: store.add_zip("set", buffer.getvalue()), "Bag/link.png in the zip is a symbolic link")


def test_a_fifo_in_the_folder_is_refused_without_blocking(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    os.mkfifo(tmp_path / "src" / "trouser" / "pipe.png")
    refused(store, lambda: store.add_folder("set", tmp_path / "src"), "pipe.png is not a regular file")


@pytest.mark.parametrize("name", ["", "   ", "../x", ".hidden", "a/b", "tab\there", "x" * (MAX_NAME_LENGTH + 1), "ends.", "<b>bold</b>"])
def test_names_that_cannot_be_a_folder(store, tmp_path, name):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    refused(store, lambda: store.add_folder(name, tmp_path / "src"), "name")


def test_a_taken_name_is_refused_and_the_set_kept(store, tmp_path):
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    first = store.add_folder("mine", tmp_path / "src")
    with pytest.raises(PhotoSetError, match='a photo set named "mine" exists'):
        store.add_folder("mine", tmp_path / "src")
    assert store.names() == ["mine"] and store.read("mine").sha256 == first.sha256


def test_class_folder_names():
    assert [class_of_folder(n) for n in FOLDER_NAMES] == list(range(10))
    assert class_of_folder("tshirt") == 0 and class_of_folder("T-shirt/top") == 0 and class_of_folder("ANKLE-BOOT") == 9
    assert class_of_folder("10") is None and class_of_folder("shoes") is None and class_of_folder("") is None


# ---- what is kept: hash, split, inputs -----------------------------------------------------------


def test_import_keeps_photos_labels_hash_and_a_fixed_stratified_split(store, tmp_path, test_photos):
    photoset = store.add_folder("from folder", make_folder(tmp_path / "src", test_photos))
    assert photoset.describe() == "60 photos of 10 classes (40 train, 20 held out)"  # round(0.3 * 6) = 2 of each class
    assert photoset.counts() == [(4, 2)] * 10 and photoset.owner == "local" and photoset.public is False
    # The same photos from a zip, wrapped in a folder, in another order: the same hash and split.
    files = {f"my photos/{CLASSES[label].replace('/', '_')}/{name}": data for label, data, name in reversed(test_photos)}
    again = store.add_zip("from zip", zip_of(files))
    assert again.sha256 == photoset.sha256
    assert [(i["sha256"], i["split"]) for i in again.items] == [(i["sha256"], i["split"]) for i in photoset.items]
    # JPEG and PNG bytes are kept as they came
    kept = {(photoset.path / "images" / i["file"]).read_bytes() for i in photoset.items}
    assert kept == {data for _, data, _ in test_photos}
    # A label changed: another set, another hash
    relabelled = [(9 if k == 0 else label, data, name) for k, (label, data, name) in enumerate(test_photos)]
    other = store.add_folder("relabelled", make_folder(tmp_path / "src2", relabelled))
    assert other.sha256 != photoset.sha256
    inputs = model_inputs(photoset)
    assert inputs.images.shape == (60, 28, 28) and inputs.images.dtype == np.uint8
    assert inputs.labels.tolist() == [i["label"] for i in photoset.items] and int(inputs.heldout.sum()) == 20
    first = test_photos[0]
    index = next(k for k, i in enumerate(photoset.items) if i["source"].endswith(first[2]))
    assert np.array_equal(inputs.images[index], to_model_input(Image.open(io.BytesIO(first[1]))))


def test_photos_labelled_one_by_one(store):
    photos = [(f"p{i}.png", drawn_photo(i), CLASSES[i % 3] if i % 2 else i % 3) for i in range(6)]  # names or indices
    photoset = store.add_photos("labelled", photos)
    assert sorted(i["label"] for i in photoset.items) == [0, 0, 1, 1, 2, 2]
    refused_store = PhotoSetStore(store.root.parent / "other")
    refused(refused_store, lambda: refused_store.add_photos("x", [("a.png", drawn_photo(1), None)]), "a.png: give it a class")


def test_a_photo_changed_on_disk_is_one_message(store, tmp_path):
    photoset = store.add_folder("set", make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (2, drawn_photo(2), "b.png")]))
    (photoset.path / "images" / photoset.items[0]["file"]).write_bytes(drawn_photo(3))
    with pytest.raises(PhotoSetError, match="changed since the set was added"):
        model_inputs(store.read("set"))


# ---- the round trip: CLI add, list, show, evaluate with a shipped model ---------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_with_a_shipped_model(tmp_path, monkeypatch, capsys, test_photos):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    source = make_folder(tmp_path / "src", test_photos)
    code, out, _ = run_cli(capsys, "photos", "add", "shirts", str(source))
    assert code == 0 and out.startswith("added photo set shirts: 60 photos of 10 classes (40 train, 20 held out), sha256 ")
    code, _, err = run_cli(capsys, "photos", "add", "shirts", str(source))
    assert code == 2 and err == 'error: a photo set named "shirts" exists: delete it first or pick another name\n'
    code, out, _ = run_cli(capsys, "photos", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["shirts", "60"] and "private" in out
    code, out, _ = run_cli(capsys, "photos", "show", "shirts")
    assert "Ankle boot       4        2" in out and "30% of each class held out" in out
    code, out, _ = run_cli(capsys, "evaluate", str(PRETRAINED / "cnn_c_report"), "--photos", "shirts", "--json")
    row = json.loads(out)
    score = row["photoset"]
    assert code == 0 and score["name"] == "shirts" and score["photos"] == 60
    assert row["test_accuracy"] == pytest.approx(90.6, abs=0.1)
    # a real accuracy: these are test items, so the model does about as well as on the test set
    assert 75 <= score["accuracy"] <= 100
    # the held-out part is 2 photos of each class (20): its accuracy is k of 20, and its misses are among the 60's
    right_heldout = score["heldout_accuracy"] * 20 / 100
    assert right_heldout == round(right_heldout) and 20 - round(right_heldout) <= len(score["wrong"])
    assert sum(sum(r) for r in score["confusion_matrix"]) == 60 and len(score["wrong"]) == round(60 * (1 - score["accuracy"] / 100))
    code, out, _ = run_cli(capsys, "evaluate", str(PRETRAINED / "cnn_c_report"), "--photos", "shirts")
    assert f"photo set shirts (60 photos): accuracy {score['accuracy']:.2f}% (test set 90.6" in out
    assert "  Ankle boot" in out and "of 6 photo(s)" in out
    code, _, err = run_cli(capsys, "evaluate", str(PRETRAINED / "cnn_c_report"), "--photos", "nope")
    assert code == 2 and err == 'error: there is no photo set "nope" (photo sets: shirts)\n'
    code, out, _ = run_cli(capsys, "photos", "delete", "shirts")
    assert code == 0 and not (tmp_path / "runs" / ".photosets" / "shirts").exists()


def test_evaluate_on_photoset_reuses_the_test_set_figures(store, tmp_path, test_photos, real_data):
    """On upscaled test items the shipped model's photo accuracy and its mistakes are real numbers."""
    photoset = store.add_folder("items", make_folder(tmp_path / "src", test_photos))
    model = load_checkpoint(PRETRAINED / "resnet_fm_best").model
    score = evaluate_on_photoset(model, photoset)
    assert score.count == 60 and score.accuracy >= 85  # 93.8% on the test set
    assert score.per_class == [100 * row[i] / sum(row) for i, row in enumerate(score.matrix)]
    for wrong in score.wrong:
        assert wrong.true != wrong.predicted and wrong.seen.shape == (28, 28) and 0 < wrong.probability <= 1
    assert [w.probability for w in score.wrong] == sorted((w.probability for w in score.wrong), reverse=True)


# ---- shared mode: owners, visibility, limits -------------------------------------------------------------


def test_shared_mode_owners_visibility_and_limits(store, tmp_path):
    policy = Policy.from_settings("shared", {"admins": ["boss@example.org"], "limits": {"photosets_per_visitor": 1}})
    ann, bob, boss = policy.visitor("anon:ann", "ann"), policy.visitor("anon:bob", "bob"), policy.visitor("boss@example.org", "boss")
    make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png")])
    store.add_folder("ann set", tmp_path / "src", visitor=ann, policy=policy)
    with pytest.raises(LimitError, match="you already have 1 photo sets, the most this server allows"):
        store.add_folder("another", tmp_path / "src", visitor=ann, policy=policy)
    assert store.names() == ["ann set"]
    # private by default: bob neither sees nor may use it
    assert [s.name for s in store.visible(bob, policy)] == []
    with pytest.raises(PhotoSetError, match="there is no photo set"):
        store.get("ann set", bob, policy)
    with pytest.raises(NotAllowed):
        store.set_public("ann set", True, bob, policy)
    store.set_public("ann set", True, ann, policy)
    assert [s.name for s in store.visible(bob, policy)] == ["ann set"] and store.get("ann set", bob, policy).public
    with pytest.raises(NotAllowed, match="only the visitor who added it or an admin"):
        store.delete("ann set", bob, policy)
    store.add_folder("bob set", tmp_path / "src", visitor=bob, policy=policy)  # the limit is per visitor
    assert [s.name for s in store.visible(ann, policy)] == ["ann set"]  # bob's is private
    assert [s.name for s in store.visible(boss, policy)] == ["ann set", "bob set"]
    store.delete("bob set", boss, policy)
    assert store.names() == ["ann set"]


@pytest.mark.parametrize("key", ["files_per_photoset", "bytes_per_photoset", "photosets_per_visitor"])
def test_photo_limits_are_checked_like_the_others(key):
    assert getattr(Limits.from_dict({key: 7}), key) == 7
    with pytest.raises(UserError, match=f"{key} = 0: use a whole number of at least 1"):
        Limits.from_dict({key: 0})


# ---- the store fuzz: a damaged labels file is one warning on that set only ---------------------------------

GOOD_ITEM = {"file": "00000.png", "label": 1, "split": "train", "sha256": "a" * 64, "source": "x.png"}
WRONG_LABELS = {
    "list": [], "null": None, "object": {}, "text": "x", "damaged": "{broken",
    "traversal": {"item": {**GOOD_ITEM, "file": "../../../etc/passwd"}},
    "label 10": {"item": {**GOOD_ITEM, "label": 10}}, "label true": {"item": {**GOOD_ITEM, "label": True}},
    "bad split": {"item": {**GOOD_ITEM, "split": "test"}}, "no items": {"items": []}, "public text": {"public": "yes"},
}


def damage_labels(path: Path, kind: str, outside: Path) -> None:
    labels = path / LABELS_NAME
    good = json.loads(labels.read_text())
    labels.unlink()
    if kind == "fifo":
        os.mkfifo(labels)
    elif kind == "directory":
        labels.mkdir()
    elif kind == "dev zero":
        labels.symlink_to("/dev/zero")
    elif kind == "symlink":  # to a valid copy outside the store: still not followed
        outside.write_text(json.dumps(good))
        labels.symlink_to(outside)
    elif kind == "huge":
        labels.write_text(" " * (MAX_LABELS_BYTES + 1))
    elif kind == "damaged":
        labels.write_text("{broken")
    else:
        value = WRONG_LABELS[kind]
        if isinstance(value, dict) and "item" in value:
            value = {**good, "items": [value["item"]]}
        elif isinstance(value, dict) and value:
            value = {**good, **value}
        labels.write_text(json.dumps(value))


FUZZ_KINDS = [*WRONG_LABELS, "fifo", "directory", "dev zero", "symlink", "huge"]


@pytest.fixture(scope="module")
def fuzzed_sets(tmp_path_factory) -> Path:
    """A store with one good set and one set per kind of damaged labels file."""
    runs = tmp_path_factory.mktemp("fuzz") / "runs"
    store = PhotoSetStore(runs / ".photosets")
    source = make_folder(tmp_path_factory.mktemp("src"), [(1, drawn_photo(1), "a.png"), (2, drawn_photo(2), "b.png")])
    store.add_folder("good", source)
    for k, kind in enumerate(FUZZ_KINDS):
        name = f"bad {k}"
        store.add_folder(name, source)
        damage_labels(store.root / name, kind, runs.parent / f"outside-{k}.json")
    return runs


def read_with_timeout(function, seconds: float = 20):
    """A FIFO opened for reading would block forever: fail instead of hanging the suite."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, "reading the photo sets blocked"
    return result[0]


def test_store_fuzz_each_damaged_set_is_one_warning(fuzzed_sets):
    sets = read_with_timeout(PhotoSetStore(fuzzed_sets / ".photosets").list)
    by_name = {s.name: s for s in sets}
    assert not by_name["good"].problems and len(by_name["good"].items) == 2
    for k, kind in enumerate(FUZZ_KINDS):
        bad = by_name[f"bad {k}"]
        assert len(bad.problems) == 1 and not bad.items, (kind, bad.problems)
    assert "symbolic link" in by_name[f"bad {FUZZ_KINDS.index('dev zero')}"].problems[0]
    assert "not a regular file" in by_name[f"bad {FUZZ_KINDS.index('fifo')}"].problems[0]
    assert "has an invalid 'items'" in by_name[f"bad {FUZZ_KINDS.index('traversal')}"].problems[0]


def test_store_fuzz_cli_lists_the_good_set_and_one_warning_per_bad_one(fuzzed_sets, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(fuzzed_sets))
    code, out, err = read_with_timeout(lambda: run_cli(capsys, "photos", "list"))
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["good"]
    assert len(err.splitlines()) == len(FUZZ_KINDS) and all(line.startswith("warning: photo set bad ") for line in err.splitlines())
    code, _, err = run_cli(capsys, "photos", "show", "bad 0")
    assert code == 2 and err.startswith('error: photo set "bad 0" cannot be used: labels.json holds list')


# ---- the app: Predict's section and Compare's columns ---------------------------------------------------


@pytest.fixture
def app_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield PhotoSetStore(tmp_path / "runs" / ".photosets")
    st.cache_resource.clear()


def test_predict_page_adds_a_zip_and_scores_every_model(app_store, test_photos):
    at = open_tab(run_app(AppTest.from_file(APP, default_timeout=120), "predict"), "Photo sets")
    assert any("No photo set yet" in c.value for c in at.caption)
    at.text_input(key="photoset_name").set_value("my <b>photos</b>").run()
    at.file_uploader(key="photoset_zip").set_value(("p.zip", zip_of({"Shoes/a.png": drawn_photo(1)}), "application/zip")).run()
    at.button(key="photoset_add_zip").click().run()
    assert not at.exception and app_store.names() == []
    assert [e.value.replace("\\", "") for e in at.error] == ['The name "my <b>photos</b>" cannot be used: use letters, digits, '
                                                           "spaces, '.', '_' and '-', starting with a letter or digit. Nothing was added."]
    files = {f"{FOLDER_NAMES[label]}/{name}": data for label, data, name in test_photos}
    at.text_input(key="photoset_name").set_value("items").run()
    at.file_uploader(key="photoset_zip").set_value(("items.zip", zip_of(files), "application/zip")).run()
    at.button(key="photoset_add_zip").click().run()
    assert not at.exception and app_store.names() == ["items"]
    assert at.selectbox(key="photoset_choice").value == "items"
    models = frame_with(at, "Photo set acc. (%)")
    assert models["Test acc. (%)"].round(1).tolist() == [93.8, 93.6, 90.6]  # resnet_fm_best, resnet_fm_photos, cnn_c_report
    assert all(75 <= v <= 100 for v in models["Photo set acc. (%)"])
    assert any("on this set:" in m.value and "of 60 photos" in m.value for m in at.markdown)
    wrong = [c for image in at.get("image") for c in image.captions if "taken for" in c]
    assert wrong or any("every photo right" in c.value for c in at.caption)


def test_compare_gets_a_column_per_photo_set(app_store, tmp_path, test_photos):
    app_store.add_folder("items", make_folder(tmp_path / "src", test_photos))
    at = run_app(AppTest.from_file(APP, default_timeout=120), "compare")
    assert "accuracy on items (%)" not in frame_with(at, "images_per_s").columns  # scored only when asked
    at.toggle(key="photoset_columns").set_value(True).run()
    assert not at.exception
    table = frame_with(at, "accuracy on items (%)")
    shipped = table[table["source"] == "shipped"]
    assert len(shipped) == 3 and all(75 <= v <= 100 for v in shipped["accuracy on items (%)"])
    config = json.loads(next(f for f in at.dataframe if "accuracy on items (%)" in f.value.columns).proto.columns)
    assert config["accuracy on items (%)"]["type_config"]["format"] == "%.2f"  # an accuracy, as every other (issue 23)


def test_pages_open_with_a_damaged_set_and_warn_once(app_store, tmp_path):
    app_store.add_folder("good", make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (2, drawn_photo(2), "b.png")]))
    app_store.add_folder("bad", tmp_path / "src")
    damage_labels(app_store.root / "bad", "dev zero", tmp_path / "unused")
    at = open_tab(run_app(AppTest.from_file(APP, default_timeout=120), "predict"), "Photo sets")
    warnings = [w.value for w in at.warning if "Photo set" in w.value]
    assert len(warnings) == 1 and "bad" in warnings[0] and "symbolic link" in warnings[0]
    assert at.selectbox(key="photoset_choice").options == ["good"]


def test_predict_page_labels_uploaded_photos_in_a_table(app_store):
    at = open_tab(run_app(AppTest.from_file(APP, default_timeout=120), "predict"), "Photo sets")
    at.text_input(key="photoset_name").set_value("labelled").run()
    photos = [(f"p{i}.png", drawn_photo(i), "image/png") for i in range(3)]
    at.file_uploader(key="photoset_photos").set_value(photos).run()
    assert not at.exception
    assert at.button(key="photoset_add_photos").disabled  # every photo needs a class first
    assert any("3 photo(s) without a class yet" in c.value for c in at.caption)


def test_shared_mode_another_visitors_public_set_cannot_be_deleted(app_store, tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    policy = Policy.from_settings("shared")
    source = make_folder(tmp_path / "src", [(1, drawn_photo(1), "a.png"), (2, drawn_photo(2), "b.png")])
    app_store.add_folder("ann public", source, visitor=policy.visitor("anon:ann", "ann"), policy=policy, public=True)
    app_store.add_folder("ann private", source, visitor=policy.visitor("anon:ann", "ann"), policy=policy)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["visitor_id"] = "anon:bob"
    open_tab(run_app(at, "predict"), "Photo sets")
    assert at.selectbox(key="photoset_choice").options == ["ann public"]
    assert at.button(key="photoset_delete").disabled and "only they or an admin" in at.button(key="photoset_delete").help
    owner = AppTest.from_file(APP, default_timeout=120)
    owner.session_state["visitor_id"] = "anon:ann"
    open_tab(run_app(owner, "predict"), "Photo sets")
    assert owner.selectbox(key="photoset_choice").options == ["ann private", "ann public"]
    owner.button(key="photoset_delete").click().run()
    assert not owner.exception and app_store.names() == ["ann public"]


def test_the_photo_sets_tab_fine_tunes_the_chosen_model_on_the_set(app_store, tmp_path, test_photos):
    """Issue 20: fine-tuning on one's own photos was command-line only (`train --from --photos`)."""
    from fmnist_core.base.paths import pretrained_dir
    from fmnist_core.store.run_store import RunStore

    photoset = app_store.add_folder("items", make_folder(tmp_path / "src", test_photos))
    at = open_tab(run_app(AppTest.from_file(APP, default_timeout=120), "predict"), "Photo sets")
    at.selectbox(key="model_choice").set_value(next(o for o in at.selectbox(key="model_choice").options if "cnn_c_report" in o)).run()
    at.button(key="photoset_finetune").click().run()
    assert not at.exception and not at.error
    store = RunStore(tmp_path / "runs")
    [run_id] = store.ids()
    run = store.read(run_id)
    shipped = pretrained_dir() / "cnn_c_report" / "model.safetensors"
    assert run.config["init_from"] == str(shipped.absolute()) and run.config["photos"] == "items"
    assert run.config["epochs"] == 3 and run.config["model"] == "cnn_c" and run.name == "cnn_c_report + items"
    assert run.config["extra"]["photos"]["hash"] == photoset.sha256  # checked and recorded before it was queued
    assert run.config["extra"]["fine_tuned_from"]["model"] == "cnn_c"
    assert at.session_state["selected_run"] == run_id and any("Queued run" in s.value for s in at.success)
    from ui.state import run_manager

    run_manager().stop(run_id)  # it would train 3 epochs on the real data: not this test's business


def test_a_stored_sets_name_is_never_read_as_a_server_folder(app_store, tmp_path, test_photos):
    """A visitor's set called "docs" must not train on the checkout's ./docs (the app passes set
    names to fine-tuning; the command line also takes a folder)."""
    from fmnist_core.training.photo_data import load_photo_data

    assert (ROOT / "docs").is_dir()  # app_store runs from the checkout
    photoset = app_store.add_folder("docs", make_folder(tmp_path / "src", test_photos))
    assert load_photo_data("docs").hash == photoset.sha256
