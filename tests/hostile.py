"""Hostile run names and messages, and how a test tells that Markdown kept them inert.

Shared by the AppTest matrix (tests/app/test_inert_names.py) and the browser check
(tests/e2e/test_inert_names_browser.py)."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from markdown_it import MarkdownIt

from fmnist_core.base.files import atomic_write_json
from fmnist_core.base.markdown_text import one_line
from fmnist_core.formats.checkpoint import WEIGHTS_NAME, load_checkpoint, read_metadata, save_checkpoint
from fmnist_core.store.run_store import result_from

TRACKER = "http://127.0.0.1:{port}/{what}.png"  # an image URL whose fetch a browser test can see


def hostile_names(port: int = 9) -> list[str]:
    """One name per attack: each would be an image, HTML, a heading, a broken code span or
    table, or a spreadsheet formula if it reached Markdown or a CSV raw."""
    return [
        f"![t]({TRACKER.format(port=port, what='image')})",
        f"<img src={TRACKER.format(port=port, what='html')} onerror=alert(1)>",
        f"line\n\n# heading\n![n]({TRACKER.format(port=port, what='newline')})",
        f"tick ` and `` ![b]({TRACKER.format(port=port, what='backtick')})",
        "# heading",
        '=HYPERLINK("http://127.0.0.1:9/","x")',
        "=cmd|' /C calc'!A0",
        "+1+1", "@SUM(1)", "-2+3", "\t=1", "\r=1", "a | b\n|---|",
    ]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # as Streamlit: raw HTML is not rendered
UNSAFE = re.compile(r"<(img|h[1-6]|a|table|script|iframe)\b")


def rendered(markdown: str) -> str:
    return _MARKDOWN.render(markdown)


def unsafe_tags(markdown: str) -> list[str]:
    """The tags a CommonMark renderer makes of `markdown` that user text must never make."""
    return UNSAFE.findall(rendered(markdown))


def html_text(rendered_html: str) -> str:
    """What a reader sees of some HTML: its text without tags, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", rendered_html))).strip()


def shown_text(markdown: str) -> str:
    """What a reader sees of `markdown` once rendered."""
    return html_text(rendered(markdown))


def as_shown(name: str) -> str:
    """A name as a page shows it: on one line, spaces collapsed."""
    return re.sub(r"\s+", " ", one_line(name)).strip()


def hostile_store(template: Path, root: Path, names: list[str]) -> list[str]:
    """Copies of a finished run, one per name (same config and seed: identical numbers),
    the last one failed with a hostile message; returns their ids in `names`' order."""
    ids = []
    for i, name in enumerate(names):
        run_id = f"hostile-{i:02d}"
        shutil.copytree(template, root / run_id)
        info = json.loads((root / run_id / "run.json").read_text())
        atomic_write_json(root / run_id / "run.json", {**info, "id": run_id, "name": name})
        config = json.loads((root / run_id / "config.json").read_text())
        atomic_write_json(root / run_id / "config.json", {**config, "name": name})
        # The name in the weights' metadata too: each copy is then a file of its own (Predict
        # lists identical files once), with the same numbers.
        save_checkpoint(load_checkpoint(template).model, root / run_id / WEIGHTS_NAME, config={**config, "name": name},
                        metrics=read_metadata(template)["metrics"])
        ids.append(run_id)
    history = [json.loads(line) for line in (template / "history.jsonl").read_text().splitlines()]
    atomic_write_json(root / ids[-1] / "result.json", result_from("failed", names[0] + " " + names[2], history, 1.0, None))
    return ids
