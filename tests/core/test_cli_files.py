"""The CLI's reads and writes at special files: `explain` reads images with a bound and never
opens a FIFO; `export --out` never replaces a device node or a FIFO and refuses a name too
long in one line; writes in general (checkpoint.atomic_write_bytes) never replace a
non-regular file; a bad command line is one line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from fmnist_core.base.files import atomic_write_bytes
from fmnist_core.commands.cli import main
from tests.helpers.cli import CHECKPOINT, limit_memory, run_main
from tests.helpers.paths import ROOT


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fmnist_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, preexec_fn=limit_memory)


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_explain_refuses_dev_zero_in_one_line_within_a_memory_bound(tmp_path):
    line = one_error_line(cli("explain", CHECKPOINT, "/dev/zero", "--out", str(tmp_path / "out")))
    assert line == "error: /dev/zero: the file is larger than the 50 MB limit for images"
    assert not (tmp_path / "out").exists()


def test_explain_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    line = one_error_line(cli("explain", CHECKPOINT, str(fifo), "--out", str(tmp_path / "out"), timeout=60))
    assert line == f"error: {fifo}: is a pipe or socket, not an image file"


def special_files(folder):
    """A FIFO and a character device node (the same device as /dev/null), made here."""
    fifo = folder / "pipe.onnx"
    os.mkfifo(fifo)
    device = folder / "null.onnx"
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.stat("/dev/null").st_rdev)
    except PermissionError:
        pytest.skip("making a device node needs root")
    return {"fifo": fifo, "device": device}


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_export_never_replaces_a_special_file(tmp_path, capsys, kind):
    target = special_files(tmp_path)[kind]
    before = os.lstat(target)
    assert main(["export", CHECKPOINT, "--out", str(target), "--check-images", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {target}: it is not a regular file"), err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_atomic_writes_never_replace_a_special_file(tmp_path, kind):
    target = special_files(tmp_path)[kind]
    mode = os.lstat(target).st_mode
    with pytest.raises(OSError, match="not a regular file"):
        atomic_write_bytes(target, b"data")
    assert os.lstat(target).st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.onnx", "pipe.onnx"]  # no temp file left


def test_atomic_writes_replace_a_symlink_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link").symlink_to(victim)
    atomic_write_bytes(tmp_path / "link", b"new")
    assert victim.read_text() == "keep" and (tmp_path / "link").read_text() == "new" and not (tmp_path / "link").is_symlink()


def test_export_with_a_300_character_name_is_one_line(tmp_path):
    out = tmp_path / ("m" * 296 + ".onnx")
    line = one_error_line(cli("export", CHECKPOINT, "--out", str(out), "--check-images", "16"))
    assert line == "error: the file name 'mmmmmmmmmmmmmmmmmmmm...' is 301 characters long; use at most 200"


@pytest.mark.parametrize("argv", [["train", "--epochs", "x"], ["bogus"], [], ["export"], ["train", "--model"]])
def test_a_bad_command_line_is_one_line(argv):
    result = run_main(*argv)
    line = one_error_line(result)
    assert line.startswith("error: fmnist_core") and line.endswith("--help"), line
    assert "usage:" not in result.stderr


def test_help_still_prints_the_usage():
    result = cli("train", "--help", timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m fmnist_core train")


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    """files.atomic_folder, under photo sets and `photos synth`: the folder appears only when its
    block ends; an error leaves neither it nor the temporary one; a name taken meanwhile is
    refused (an empty folder may be replaced when asked)."""
    from fmnist_core.base.files import atomic_folder

    target = tmp_path / "set"
    with pytest.raises(RuntimeError), atomic_folder(target) as temp:
        (temp / "a.txt").write_text("half")
        assert not target.exists()
        raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(target) as temp:
        (temp / "a.txt").write_text("whole")
    assert (target / "a.txt").read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["set"]
    with pytest.raises(FileExistsError), atomic_folder(target) as temp:
        (temp / "b.txt").write_text("other")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"] and [p.name for p in tmp_path.iterdir()] == ["set"]
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty", replace_empty=True) as temp:
        (temp / "c.txt").write_text("c")
    assert (tmp_path / "empty" / "c.txt").exists()
