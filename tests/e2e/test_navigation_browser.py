"""Each page's URL opens that page directly, with our navigation only, even as the first
request a freshly started server gets (a bookmark after a restart)."""

import pytest

from tests.helpers.server import StreamlitServer, open_page

PAGES = [("", "Fashion-MNIST Studio"), ("train", "Train"), ("compare", "Compare"), ("predict", "Predict"), ("sweep", "Sweep")]
OUR_LINKS = ["Home", "Train", "Compare", "Predict", "Sweep"]


@pytest.mark.parametrize("path, title", PAGES)
def test_page_url_opens_directly_on_a_fresh_server_with_our_navigation(page, tmp_path, path, title):
    # A server of its own: with the pages in a folder named pages/, Streamlit ran a direct
    # page URL as a legacy multipage app (its own file-name sidebar, no router) until
    # someone had opened "/" on that server.
    server = StreamlitServer(tmp_path / "runs", tmp_path / "streamlit.log").start()
    try:
        open_page(page, server, path)
        assert title in page.locator("h1").first.inner_text()
        page.locator("[data-testid=stSidebarNav]").first.wait_for()
        assert page.locator("[data-testid=stSidebarNav]").count() == 1
        links = [text.split("\n")[-1].strip() for text in page.locator("[data-testid=stSidebarNav] a").all_inner_texts()]
        assert links == OUR_LINKS
    finally:
        server.stop()
