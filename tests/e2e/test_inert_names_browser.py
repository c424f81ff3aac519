"""Hostile run names in a real browser: Train (with a failed run's stored message), Compare
("Identical numbers") and Predict's "Every model" table never make the browser fetch the
images the names point at, and show no heading of theirs."""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.helpers.browser import upload_a_shoe
from tests.helpers.server import StreamlitServer, free_port, open_page
from tests.hostile import hostile_names, hostile_store


class Tracker(http.server.BaseHTTPRequestHandler):
    """Records every request: a fetched tracking image is a name rendered as Markdown."""

    seen: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Tracker.seen.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def tracker():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Tracker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory, template_run, tracker):
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "runs").mkdir()
    ids = hostile_store(template_run, folder / "runs", hostile_names(tracker))
    server = StreamlitServer(folder / "runs", folder / "streamlit.log").start()
    server.hostile_ids = ids
    yield server
    server.stop()


def test_no_page_fetches_an_image_a_name_points_at(browser, hostile_server, tracker, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    tracked = f"127.0.0.1:{tracker}"
    try:
        open_page(page, hostile_server, "train")  # the newest run is shown: the failed one, with its message
        page.wait_for_selector("[data-testid=stAlertContentError]")
        assert "![t](http://" + tracked in page.locator("[data-testid=stAlertContentError]").first.inner_text()
        open_page(page, hostile_server, "compare?runs=" + ",".join(hostile_server.hostile_ids))  # all selected
        caption = page.get_by_text("Identical numbers", exact=False)
        caption.wait_for()
        assert "# heading" in caption.inner_text()  # the names, as text
        open_page(page, hostile_server, "predict")
        page.get_by_text("Every model", exact=True).click()
        upload_a_shoe(page, tmp_path)
        page.wait_for_function("document.querySelectorAll('[data-testid=stTable] tbody tr').length >= 13")
        rows = page.locator("[data-testid=stTable] tbody th").all_inner_texts()
        assert any("![t](http://" + tracked in row for row in rows), rows
        page.wait_for_timeout(1500)  # time for any image the page holds to be requested
        for selector in (f"[data-testid=stMain] img[src*='{tracked}']", "[data-testid=stMain] h1:has-text('heading')"):
            assert page.locator(selector).count() == 0, selector
        assert page.locator("[data-testid=stException]").count() == 0
    finally:
        context.close()
    assert [url for url in requested if tracked in url] == [] and Tracker.seen == []
