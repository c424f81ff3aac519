"""The heatmap beside a drawing follows the drawing, in the real app."""

import time

from tests.helpers.server import open_page

# In the Draw tab: the test-set examples tab shows a heatmap of its own, hidden.
HEATMAP = "[data-testid=stImage]:has-text('why ') img:visible"
HEATMAP_SRC = """() => { const shown = [...document.querySelectorAll('[data-testid=stImage]')].find(e => e.checkVisibility() && e.innerText.includes('why '));
                        return shown ? shown.querySelector('img').getAttribute('src') : null; }"""


def stroke(page, box, left: int, right: int, top: int, bottom: int) -> None:
    """A filled block drawn with the mouse, in canvas pixels."""
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + left, y0 + top)
    page.mouse.down()
    for y in range(top, bottom, 10):
        page.mouse.move(x0 + left, y0 + y, steps=2)
        page.mouse.move(x0 + right, y0 + y, steps=4)
    page.mouse.up()


def test_the_heatmap_updates_after_a_stroke(page, server):
    open_page(page, server, "predict")
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    stroke(page, box, 100, 180, 30, 260)  # a trouser-like block
    start = time.perf_counter()
    page.locator(HEATMAP).wait_for()
    print(f"stroke end -> heatmap shown: {(time.perf_counter() - start) * 1000:.0f} ms")
    first = page.evaluate(HEATMAP_SRC)
    assert first
    assert page.get_by_text("why ").count() >= 1

    stroke(page, box, 20, 260, 30, 80)  # a wide band on top: now a different item
    page.wait_for_function(f"(before) => {{ const src = ({HEATMAP_SRC})(); return src && src !== before; }}", arg=first)
    # Another method redraws it with that method.
    page.get_by_text("Occlusion", exact=True).click()
    page.get_by_text("(Occlusion): red for").wait_for()
    assert page.locator("[data-testid=stException]").count() == 0
