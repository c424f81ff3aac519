"""Browser tests: the real app (`streamlit run`) driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run streamlit_app.py` on a free port, with its own run store."""

    def __init__(self, runs_dir: Path, log: Path):
        self.runs_dir, self.log = runs_dir, log
        self.process = None
        self.port = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StreamlitServer:
        self.port = free_port()
        env = {**os.environ, "FMNIST_RUNS_DIR": str(self.runs_dir)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return self
            except OSError:
                time.sleep(0.3)
            assert self.process.poll() is None, f"streamlit exited; see {self.log}:\n{self.log.read_text()[-2000:]}"
        raise TimeoutError(f"streamlit did not become healthy; see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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


def open_page(page, server, path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    page.wait_for_selector("[data-testid=stApp]")
    page.wait_for_selector("h1")
    assert page.locator("[data-testid=stException]").count() == 0


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
