"""Finding things on the pages of an AppTest, and images to give them."""

from __future__ import annotations

import io
import json

import pandas as pd
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from tests.helpers.paths import APP


def frame_with(at, column: str):
    """The first st.dataframe of an AppTest whose value has `column` (frames have no keys there)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    return None


def as_displayed(element) -> dict[str, list[str]]:
    """What each column of an st.dataframe says, row by row, as the grid draws it: under the
    column's label, each value through the column's printf format (none: the value as text),
    the table's placeholder for a missing value (none set: the grid's own, "None")."""
    config = json.loads(element.proto.columns) if element.proto.columns else {}
    # The grid formats with sprintf-js, whose %g (no precision) prints the number as it is,
    # where Python's rounds to 6 digits: 0.010000000000000002 stays that long in the browser.
    as_is = {"%g": lambda value: repr(float(value)).removesuffix(".0")}
    placeholder = element.proto.placeholder if element.proto.HasField("placeholder") else "None"
    frame = element.value
    shown = {}
    for name in list(element.proto.column_order) or list(frame.columns):
        column = config.get(name, {})
        number_format = column.get("type_config", {}).get("format")
        shown[column.get("label", name)] = [placeholder if pd.isna(value) else as_is[number_format](value) if number_format in as_is
                                            else number_format % value if number_format and number_format.startswith("%") else str(value)
                                            for value in frame[name]]
    return shown


def run_app(at, page: str | None = None):
    """Run an AppTest of the router, then switch to app_pages/<page>.py; no exception allowed."""
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def png(draw) -> bytes:
    image = Image.new("RGB", (300, 300), "white")
    draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def open_tab(at: AppTest, label: str, key: str = "predict_tab") -> AppTest:
    """Open one of a page's tabs, as a click on it does: the page reruns with it open (only an
    open tab runs Predict's camera, test-set examples and photo sets, and Compare's views)."""
    at.session_state[key] = label
    return at.run()


def open_view(at: AppTest, label: str) -> AppTest:
    """Open one of Compare's views (its tabs): Curves (open at first), Leaderboard, What a
    model gets wrong, Table 1."""
    return open_tab(at, label, key="view")


def upload_tab(at: AppTest):
    """Predict's Upload tab: its images, not another tab's (an open Test-set examples tab shows one of its own)."""
    return next(tab for tab in at.tabs if tab.label == "Upload")


def picker(at):
    """The Sweep page's picker (a new widget, with a new key, whenever a sweep's label changes)."""
    boxes = [box for box in at.selectbox if box.label == "Sweep"]
    assert boxes, "the page lists no sweep"
    return boxes[0]


def open_compare(view: str | None = None) -> AppTest:
    at = run_app(AppTest.from_file(APP, default_timeout=120), "compare")
    return open_view(at, view) if view else at
