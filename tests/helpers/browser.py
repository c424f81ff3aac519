"""Driving the real app in Chromium: picking a run, reading one from disk, uploading a photo,
measuring a table's overflow."""

from __future__ import annotations

import json
import time

from PIL import Image, ImageDraw


def pick_run(page, name: str) -> None:
    """Select a run; retried, since a live run's rerun can close the list as it opens."""
    for attempt in range(3):
        page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True)).click()
        try:
            page.get_by_role("option").filter(has_text=name).first.click(timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - the list closed before the click: open it again
            if attempt == 2:
                raise
    time.sleep(0.5)


def run_named(runs_dir, name: str) -> dict:
    for info in (json.loads(p.read_text()) for p in runs_dir.glob("*/run.json")):
        if info["name"] == name:
            return info
    raise AssertionError(f"no run named {name!r} in {runs_dir}")


def upload_a_shoe(page, tmp_path) -> None:
    photo = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(photo).polygon([(40, 200), (300, 200), (360, 260), (40, 260)], fill=(20, 20, 20))
    photo.save(tmp_path / "shoe.png")
    page.get_by_role("tab", name="Upload").click()
    page.locator(".st-key-images input[type=file]").set_input_files(str(tmp_path / "shoe.png"))


def grid_overflow(table) -> dict:
    """The horizontal overflow of a dataframe: glide-data-grid draws on a canvas inside a
    scroller (.dvn-scroller); a table wider than its place makes that scroller wider inside."""
    return table.evaluate(
        "f => { const s = f.querySelector('.dvn-scroller'); return {scroll: s.scrollWidth, client: s.clientWidth}; }")
