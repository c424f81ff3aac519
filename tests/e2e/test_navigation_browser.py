"""Each page's URL opens that page directly, with exactly one navigation (ours)."""

import pytest

from tests.e2e.conftest import open_page


@pytest.mark.parametrize("path, title", [("", "Fashion-MNIST Studio"), ("train", "Train"), ("compare", "Compare"), ("predict", "Predict"), ("sweep", "Sweep")])
def test_page_url_opens_directly_with_one_navigation(page, server, path, title):
    open_page(page, server, path)
    assert title in page.locator("h1").first.inner_text()
    page.locator("[data-testid=stSidebarNav]").first.wait_for()
    assert page.locator("[data-testid=stSidebarNav]").count() == 1
    links = page.locator("[data-testid=stSidebarNav] a")
    assert links.count() == 5, links.all_inner_texts()
