import re
import time

from playwright.sync_api import expect

from tests.helpers.browser import upload_a_shoe
from tests.helpers.server import open_page


def test_draw_on_the_canvas_and_get_a_prediction(page, server):
    open_page(page, server, "predict")
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + 100, y0 + 30)
    page.mouse.down()
    for y in range(30, 260, 10):  # a filled, trouser-shaped block
        page.mouse.move(x0 + 100, y0 + y, steps=2)
        page.mouse.move(x0 + 180, y0 + y, steps=4)
    page.mouse.up()
    start = time.perf_counter()
    page.get_by_role("tabpanel", name="Draw").get_by_text("what the model sees (28x28)").wait_for()
    latency = time.perf_counter() - start
    print(f"stroke end -> prediction shown: {latency * 1000:.0f} ms")
    page.get_by_role("tabpanel", name="Draw").get_by_text("model call:").wait_for()
    assert page.locator("[data-testid=stException]").count() == 0
    # A look at a tab that runs only while open (a rerun of the page) leaves the drawing and its answer.
    answer = page.locator(".st-key-draw_verdict").inner_text()
    page.get_by_role("tab", name="Camera").click()
    page.locator("[data-testid=stCameraInput]").wait_for()
    page.get_by_role("tab", name="Draw").click()
    page.get_by_role("tabpanel", name="Draw").get_by_text("what the model sees (28x28)").wait_for()
    assert page.locator(".st-key-draw_verdict").inner_text() == answer and answer.strip()
    # Clear resets the canvas and the prediction goes away.
    page.get_by_role("button", name="Clear").click()
    page.get_by_text("Draw an item on the canvas").wait_for()


def test_upload_a_photo_and_see_input_and_probabilities(page, server, tmp_path):
    open_page(page, server, "predict")
    upload_a_shoe(page, tmp_path)
    page.get_by_role("tabpanel", name="Upload").get_by_text("what the model sees (28x28)").wait_for()
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 1")  # the probabilities
    assert page.get_by_text("shoe.png").count() >= 1

    bad = tmp_path / "fake.png"
    bad.write_bytes(b"not an image at all")
    page.locator(".st-key-images input[type=file]").set_input_files(str(bad))
    page.get_by_text("fake.png: the file is not an image").wait_for()
    assert page.locator("[data-testid=stException]").count() == 0


def test_a_photo_suggests_the_model_trained_on_photos(page, server, tmp_path):
    """resnet_fm_best never saw a photo; resnet_fm_photos did and names 88% of synthetic photos
    against 82%. Uploading a photo to the former says so, and "Use it" switches the menu."""
    open_page(page, server, "predict")
    model_menu = page.get_by_role("combobox", name="Model")  # its value is the chosen model's label
    model_menu.click()
    page.get_by_role("option").filter(has_text="resnet_fm_best").first.click()
    expect(model_menu).to_have_value(re.compile(r"^resnet_fm_best · "))
    upload_a_shoe(page, tmp_path)
    panel = page.get_by_role("tabpanel", name="Upload")
    panel.get_by_text("what the model sees (28x28)").first.wait_for()  # .first: a rerun may briefly show the old one too
    hint = panel.get_by_text("never saw a photo in training")
    hint.wait_for()
    assert "resnet_fm_photos" in hint.inner_text()
    panel.get_by_role("button", name="Use it").click()
    expect(model_menu).to_have_value(re.compile(r"^resnet_fm_photos · "))
    hint.wait_for(state="detached")  # the photo model answers now: nothing to suggest
    panel.get_by_text("what the model sees (28x28)").first.wait_for()  # .first: a rerun may briefly show the old one too
    assert page.locator("[data-testid=stException]").count() == 0


IN_VIEW = """el => {
  const box = el.getBoundingClientRect();
  const x = box.left + Math.min(box.width, 20) / 2, y = box.top + box.height / 2;
  const top = document.elementFromPoint(x, y);  // not hidden under the app's header
  const over = top ? `${top.tagName}.${top.getAttribute("data-testid") || top.className}` : null;
  return {top: box.top, bottom: box.bottom, height: innerHeight, visible: !!top && el.contains(top), over};
}"""


def test_on_a_phone_the_prediction_stays_in_view_while_drawing(browser, server):
    """390x844: the details stack below the canvas, so the answer sits above it and sticks
    under the header while the canvas is in view, even with the canvas scrolled to the top."""
    from fmnist_core.images.data import CLASSES

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        open_page(page, server, "predict")
        canvas = page.locator("canvas.upper-canvas")
        canvas.wait_for()
        answer = page.locator(".st-key-draw_verdict strong").first
        for left in (100, 60):  # a first stroke; then, with the details below making the page long, a second
            canvas.evaluate("el => el.scrollIntoView({block: 'start'})")  # the worst case: canvas at the very top
            page.wait_for_timeout(300)
            box = canvas.bounding_box()
            x0, y0 = box["x"], box["y"]
            page.mouse.move(x0 + left, y0 + 30)
            page.mouse.down()
            for y in range(30, 260, 12):
                page.mouse.move(x0 + left, y0 + y, steps=2)
                page.mouse.move(x0 + 180, y0 + y, steps=3)
            page.mouse.up()
            answer.wait_for()
            page.wait_for_timeout(1000)
        assert answer.inner_text() in CLASSES
        where = answer.evaluate(IN_VIEW)
        assert 0 <= where["top"] and where["bottom"] <= where["height"], where
        assert where["visible"], str(where)
        assert canvas.bounding_box()["y"] < 844  # and the canvas is still there to draw on
    finally:
        context.close()
