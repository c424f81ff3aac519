"""Run names and stored messages are inert text on every page and in every download: a
matrix of hostile names (a Markdown image, HTML, line breaks, backticks, a heading, spreadsheet
formulas) over every page (AppTest), the CSVs and the model card."""

from __future__ import annotations

import csv
import html
import io
import re
import shlex
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.analysis.metrics import analyze
from fmnist_core.analysis.model_card import build_card
from fmnist_core.base.csv_cells import inert_cell
from fmnist_core.base.files import atomic_write_json
from fmnist_core.base.markdown_text import one_line
from fmnist_core.formats.checkpoint import load_checkpoint, read_metadata
from fmnist_core.modeling.config import SETTINGS
from fmnist_core.store.catalog import EntryKey
from fmnist_core.store.run_store import RunStore
from tests.helpers.pages import open_tab, run_app
from tests.helpers.paths import APP, ROOT
from tests.hostile import FORMULA_STARTS, as_shown, hostile_names, hostile_store, html_text, rendered, shown_text, unsafe_tags

NAMES = hostile_names()
MARKDOWN_FIELDS = ("body", "label", "help")  # the fields of an element Streamlit renders as Markdown


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def markdown_texts(at: AppTest) -> list[str]:
    """Every text on the page that Streamlit renders as Markdown: element bodies, labels,
    help tooltips and st.table's cells (index included)."""
    texts = []
    for node in walk(at._tree):
        proto = getattr(node, "proto", None)
        if node.type == "table":
            frame = node.value
            texts += [str(v) for v in frame.index] + [str(v) for v in frame.to_numpy().ravel()]
        elif node.type == "html":
            continue  # raw HTML by design (heading_html escapes it): checked below
        elif proto is not None:
            texts += [value for field in MARKDOWN_FIELDS if isinstance(value := getattr(proto, field, None), str) and value]
    return texts


def assert_inert(at: AppTest) -> list[str]:
    """No Markdown text on the page renders to an image, a link, a heading, HTML or a table,
    and no st.html element holds an unescaped tag from a name; returns the shown texts."""
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    for text in texts:
        assert not unsafe_tags(text), (text, rendered(text))
    for node in walk(at._tree):
        if node.type == "html":
            assert "<img" not in node.proto.body and "<h1" not in node.proto.body, node.proto.body
    return [shown_text(t) for t in texts]


@pytest.fixture
def hostile_app(tmp_path, template_run, monkeypatch):  # the real data: the shipped models cache their scores on it
    root = tmp_path / "runs"
    root.mkdir()
    ids = hostile_store(template_run, root, NAMES)
    atomic_write_json(root / ".sweeps" / "sweep-20260101-000000-beef.json", {
        "id": "sweep-20260101-000000-beef", "name": NAMES[0], "status": "failed", "created": "2026-01-01T00:00:00",
        "message": NAMES[2], "space": [{"name": "lr", "kind": "grid", "values": [0.01]}], "base": {}, "options": {},
        "trial_runs": ids[:2]})
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    yield root, ids
    st.cache_resource.clear()


def open_page(page: str, selected_run: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if selected_run:
        at.session_state["selected_run"] = selected_run
    return run_app(at, page)


def test_train_shows_names_and_the_stored_message_as_text(hostile_app):
    root, ids = hostile_app
    at = open_page("train", selected_run=ids[-1])  # the failed one: its result.json message is shown
    shown = assert_inert(at)
    message = as_shown(NAMES[0] + " " + NAMES[2])
    assert any(message in s for s in shown), shown  # shown, character for character
    assert any(e.value.startswith(r"\!\[t\]") for e in at.error)


def test_compare_identical_numbers_caption_holds_every_name_as_text(hostile_app):
    root, ids = hostile_app
    at = open_page("compare")
    at.multiselect(key="compare_runs").set_value([EntryKey.of("run", i) for i in ids]).run()
    shown = assert_inert(at)
    caption = next(s for s in shown if "Identical numbers" in s)
    for name in NAMES:
        assert as_shown(name) in caption, (name, caption)


def test_predict_every_model_table_holds_every_name_as_text(hostile_app):
    root, ids = hostile_app
    at = open_tab(open_page("predict"), "Test-set examples")
    at.toggle(key="compare_all").set_value(True).run()
    at.button(key="random_example").click().run()
    assert_inert(at)
    table = at.table[0].value
    shown = [shown_text(str(cell)).replace("\u2011", "-") for cell in table.index]
    for name in NAMES:
        assert as_shown(name) in shown, (name, shown)


@pytest.mark.parametrize("page", ["home", "sweep"])
def test_other_pages_render_no_name_as_markdown(hostile_app, page):
    at = open_page(page)
    shown = assert_inert(at)
    if page == "sweep":  # the record's name is in the picker, its message in an info box
        assert any(as_shown(NAMES[2]) in s for s in shown), shown


# ---- downloads --------------------------------------------------------------------------

def test_every_csv_cell_that_starts_a_formula_is_quoted():
    import pandas as pd

    from ui.tables import frame_csv

    frame = pd.DataFrame({"name": NAMES, "test_accuracy": [-1.5] * len(NAMES)})
    rows = list(csv.reader(io.StringIO(frame_csv(frame))))[1:]
    for name, row in zip(NAMES, rows):
        assert row[0] == ("'" + name if name.startswith(FORMULA_STARTS) else name)
        assert row[1] == "-1.5"  # numbers stay numbers
    assert inert_cell("ok") == "ok" and inert_cell(None) is None


def test_the_pages_make_csvs_only_through_frame_csv():
    """One function writes every CSV a visitor downloads: no page or ui module calls to_csv itself."""
    for path in [*(ROOT / "app_pages").glob("*.py"), *(ROOT / "ui").glob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if ".to_csv(" in line:
                assert path.name == "tables.py" and "inert_cell" in line, f"{path.name}:{number}: {line.strip()}"


def test_runs_csvs_on_train_and_compare_quote_formulas(hostile_app):
    from ui.tables import csv_text, runs_frame

    root, _ = hostile_app
    names = [row["Name"] for row in csv.DictReader(io.StringIO(csv_text(runs_frame(RunStore(root).list()))))]
    assert sorted(names) == sorted("'" + n if n.startswith(FORMULA_STARTS) else n for n in NAMES)


def test_model_card_keeps_hostile_names_inert(tmp_path, template_run, tiny_data):
    weights = template_run / "model.safetensors"
    metadata = read_metadata(weights)
    analysis = analyze(load_checkpoint(weights).model, tiny_data)
    for name in NAMES:
        metadata["config"] = {**metadata["config"], "name": name}
        card = build_card(name, metadata, analysis, tiny_data)
        page = rendered(card)
        assert not re.search(r"<(img|a)\b", page), (name, page)
        assert page.count("<h1>") == 1 and page.count("<h2>") == card.count("\n## "), (name, page)
        title = re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)
        assert html_text(title) == as_shown(f"Model card: {name}")
        # the config table: a row per setting, the name in its own cell
        config_table = page.split("<h2>Training configuration</h2>")[1].split("</table>")[0]
        assert config_table.count("<tr>") == 1 + len(SETTINGS.keys() & metadata["config"]), (name, config_table)
        assert as_shown(name) in html_text(config_table)
        # the shell block: one block of one line, whose command gives back the name (on one line)
        blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", page, re.S)
        assert len(blocks) == 1 and blocks[0].count("\n") == 1, (name, blocks)
        words = shlex.split(html.unescape(blocks[0]))
        assert words[words.index("--name") + 1] == one_line(name)


def test_the_card_written_by_export_has_an_escaped_title(tmp_path, template_run):
    hostile = tmp_path / "<img src=x onerror=alert(1)>"
    hostile.mkdir()
    for item in Path(template_run).iterdir():
        (hostile / item.name).write_bytes(item.read_bytes())
    from fmnist_core.commands.cli import main

    assert main(["export", str(hostile), "--out", str(tmp_path / "m.onnx"), "--card", "--check-images", "20"]) == 0
    card = (tmp_path / "m.md").read_text()
    assert card.splitlines()[0] == r"# Model card: \<img src\=x onerror\=alert\(1\)\>"
    assert not unsafe_tags(card.splitlines()[0].removeprefix("# "))
