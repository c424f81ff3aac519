"""Browser tests: the real app (`streamlit run`) driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.server import CHROMIUM, CHROMIUM_ARGS, StreamlitServer


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    srv = StreamlitServer(folder / "runs", folder / "streamlit.log").start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


# ---- shared mode: a server started in it, and visitors with browser contexts of their own ------


@pytest.fixture
def shared_server(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    server = StreamlitServer(tmp_path / "runs", tmp_path / "streamlit.log").start()
    yield server
    server.stop()


@pytest.fixture
def visitor(browser):
    """A new visitor: a browser context of its own (own cookies, own Streamlit session)."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield make
    for context in contexts:
        context.close()
