"""`predict` on the command line: files read with a bound, one bad file never sinks a batch."""

import subprocess
import sys
import time

from PIL import Image, ImageDraw

from tests.helpers.cli import CHECKPOINT, last_json, limit_memory, run_main
from tests.helpers.paths import ROOT


def cli(*args, timeout=300, preexec_fn=None):
    """In a process of its own: the memory bound needs one."""
    return subprocess.run([sys.executable, "-m", "fmnist_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, preexec_fn=preexec_fn)


def trouser_png(path) -> str:
    image = Image.new("L", (200, 300), 250)
    draw = ImageDraw.Draw(image)
    draw.rectangle([50, 20, 95, 290], fill=20)
    draw.rectangle([105, 20, 150, 290], fill=20)
    draw.rectangle([50, 20, 150, 60], fill=20)
    image.save(path)
    return str(path)


def test_predict_dev_zero_fails_fast_with_one_line():
    start = time.perf_counter()
    result = cli("predict", CHECKPOINT, "/dev/zero", timeout=120, preexec_fn=limit_memory)
    seconds = time.perf_counter() - start
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: /dev/zero: the file is larger than the 50 MB limit for images"]
    assert result.stdout == ""
    assert seconds < 60


def test_a_bad_file_in_a_batch_is_reported_and_the_rest_classified(tmp_path):
    good = trouser_png(tmp_path / "trouser.png")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    folder = tmp_path / "folder"
    folder.mkdir()
    result = run_main("predict", CHECKPOINT, str(text), good, str(folder), str(tmp_path / "missing.jpg"), "/dev/zero")
    assert result.returncode == 2
    assert result.stdout.strip().splitlines()[0].startswith(f"{good}: Trouser")
    errors = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in errors] == [str(text), str(folder), str(tmp_path / "missing.jpg"), "/dev/zero"]
    assert all(line.startswith("error: ") for line in errors) and "Traceback" not in result.stderr

    as_json = run_main("predict", CHECKPOINT, good, str(text), "--json")
    assert as_json.returncode == 2
    report = last_json(as_json.stdout)
    assert [p["image"] for p in report["predictions"]] == [good] and report["predictions"][0]["label"] == "Trouser"
    assert [e["image"] for e in report["errors"]] == [str(text)] and "not an image" in report["errors"][0]["error"]


def test_all_good_files_exit_0_and_help_explains_status_2(tmp_path):
    result = run_main("predict", CHECKPOINT, trouser_png(tmp_path / "a.png"), trouser_png(tmp_path / "b.png"))
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.strip().splitlines()) == 2
    helptext = " ".join(run_main("predict", "--help").stdout.split())
    assert "reported on stderr" in helptext and "the exit status is then 2" in helptext
