"""Start, watch, refresh, stop; then restart the server and find the runs again."""

import re
import time

from tests.e2e.conftest import StreamlitServer, open_page


def set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    time.sleep(0.6)  # let the rerun land before the next widget


def start_run(page, epochs: int, name: str) -> None:
    set_number(page, "Epochs", epochs)
    page.get_by_label("Run name").fill(name)
    page.get_by_label("Run name").press("Enter")
    time.sleep(0.6)
    page.get_by_role("button", name="Start training").click()


def pick_run(page, name: str) -> None:
    page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True)).click()
    page.get_by_role("option").filter(has_text=name).first.click()
    time.sleep(0.5)


def status_text(page) -> str:
    return page.locator("[data-testid=stMarkdownContainer]", has_text="Status:").first.inner_text()


def test_watch_refresh_stop_and_restart(page, server):
    open_page(page, server, "train")
    start_run(page, epochs=20, name="watched")  # long enough to still be running when we stop it
    # progress with ETA and throughput, then the epoch charts
    progress = page.locator("[data-testid=stProgress]")
    progress.wait_for(timeout=60_000)
    assert re.search(r"img/s · ETA \d+:\d\d", page.locator("[data-testid=stProgress]").inner_text())
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 1", timeout=60_000)
    first = page.locator("[data-testid=stProgress]").inner_text()
    time.sleep(2.5)
    assert page.locator("[data-testid=stProgress]").inner_text() != first  # it updates live

    # A refresh mid-run finds the run still going, with its progress.
    page.reload()
    page.locator("[data-testid=stProgress]").wait_for(timeout=30_000)
    assert "running" in status_text(page)

    # A second run waits in the queue; then stop the first.
    start_run(page, epochs=1, name="queued one")
    page.get_by_text("Waiting in the queue").wait_for()
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("cancelled before it started").wait_for()

    pick_run(page, "watched")  # show the first run again
    page.get_by_role("button", name="Stop").click(timeout=30_000)
    page.get_by_text("stopped by request").wait_for(timeout=30_000)
    assert "stopped" in status_text(page)


def test_finished_runs_survive_a_server_restart(browser, tmp_path):
    first = StreamlitServer(tmp_path / "runs", tmp_path / "log1").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, first, "train")
        set_number(page, "Batch size", 1024)
        start_run(page, epochs=1, name="survivor")
        page.get_by_text("finished").first.wait_for(timeout=120_000)
    finally:
        first.stop()
    second = StreamlitServer(tmp_path / "runs", tmp_path / "log2").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, second, "train")
        page.get_by_text("survivor").first.wait_for()
        assert "finished" in status_text(page)
        # its accuracy and loss curves, read back from disk
        page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2")
    finally:
        second.stop()
