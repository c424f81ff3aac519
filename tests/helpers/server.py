"""The real app: `streamlit run` on a free port, and Debian's Chromium to drive it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers.paths import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


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


def open_page(page, server, path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    page.wait_for_selector("[data-testid=stApp]")
    page.wait_for_selector("h1")
    assert page.locator("[data-testid=stException]").count() == 0
