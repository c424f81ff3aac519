"""Finding things on the pages of an AppTest, and images to give them."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from tests.conftest import APP, run_app


def png(draw) -> bytes:
    image = Image.new("RGB", (300, 300), "white")
    draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload_tab(at: AppTest):
    """Predict's Upload tab (the test-set examples tab shows an image of its own at once)."""
    return next(tab for tab in at.tabs if tab.label == "Upload")


def picker(at):
    """The Sweep page's picker (a new widget, with a new key, whenever a sweep's label changes)."""
    boxes = [box for box in at.selectbox if box.label == "Sweep"]
    assert boxes, "the page lists no sweep"
    return boxes[0]


def open_compare() -> AppTest:
    return run_app(AppTest.from_file(APP, default_timeout=120), "compare")
