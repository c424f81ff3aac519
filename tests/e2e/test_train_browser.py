"""Start, watch, refresh, stop; then restart the server and find the runs again."""

import http.server
import re
import signal
import threading
import time
import urllib.request

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fmnist_core.store.run_store import RunStore
from tests.helpers.runs import StepClock, stored_run
from tests.helpers.server import StreamlitServer, open_page


def set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    time.sleep(0.6)  # let the rerun land before the next widget


def start_run(page, epochs: int, name: str) -> None:
    set_number(page, "Epochs", epochs)
    page.get_by_label("Run name", exact=True).fill(name)
    page.get_by_label("Run name", exact=True).press("Enter")
    time.sleep(0.6)
    page.get_by_role("button", name="Start training").click()


def pick_run(page, name: str, tries: int = 3) -> None:
    """Open the Run picker and choose `name`. The list closes when the chosen run's label
    changes under it (its status moved on: the select redraws its value); a user then
    opens it again, and so does this, up to `tries` times."""
    for attempt in range(tries):
        page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True)).click()
        try:
            page.get_by_role("option").filter(has_text=name).first.click(timeout=5_000)
            break
        except PlaywrightTimeout:
            if attempt == tries - 1:
                raise
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
    page.get_by_role("button", name="Cancel", exact=True).click()
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
        page.locator("[data-testid=stMarkdownContainer]", has_text="Status:").filter(has_text="finished").wait_for(timeout=300_000)
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


def test_stopping_the_server_mid_run_exits_cleanly_and_keeps_the_epochs(browser, tmp_path, tiny_dir, monkeypatch):
    """SIGTERM to `streamlit run` while a run trains: exit status 0, no C++ abort
    ("terminate called without an active exception"), the run interrupted with its epochs."""
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))  # 600 images: an epoch takes a moment
    server = StreamlitServer(tmp_path / "runs", tmp_path / "log").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, server, "train")
        set_number(page, "Batch size", 256)
        start_run(page, epochs=200, name="cut short")
        deadline = time.time() + 120
        while not list((tmp_path / "runs").glob("*/history.jsonl")):
            assert time.time() < deadline, "no epoch finished"
            time.sleep(0.3)
        time.sleep(1.0)  # well inside training, not between runs
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(60)
    finally:
        server.stop()
    log = (tmp_path / "log").read_text()
    assert exit_code == 0, log[-2000:]
    assert "terminate called" not in log and "Aborted" not in log
    (record,) = RunStore(tmp_path / "runs").list()
    assert record.name == "cut short" and record.status == "interrupted"
    assert 1 <= len(record.history) < 200 and record.weights is not None


@pytest.fixture
def tiny_server(tmp_path, tiny_dir, monkeypatch):
    """A server of its own on the tiny data set (an epoch takes a moment) and an empty store."""
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_dir))
    server = StreamlitServer(tmp_path / "runs", tmp_path / "log").start()
    yield server
    server.stop()


def wait_for_result(store: RunStore, name: str, timeout: float = 120):
    """The run named `name` once it has ended, read from the store (not from a page, where
    the stored runs' "finished" is shown from the start)."""
    deadline = time.time() + timeout
    while True:
        record = next((r for r in store.list() if r.name == name), None)
        if record is not None and record.result:
            return record
        assert time.time() < deadline, f"{name!r} did not end"
        time.sleep(0.5)


def picker_text(page) -> str:
    """What the Run picker shows as chosen (its text, or its search box's value)."""
    picker = page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True))
    inputs = picker.locator("input")
    return picker.inner_text() + " " + " ".join(inputs.nth(i).input_value() for i in range(inputs.count()))


def test_another_visitors_new_run_leaves_this_sessions_selection(browser, tiny_server):
    store = RunStore(tiny_server.runs_dir, clock=StepClock())  # a second apart, older than the server's runs
    stored_run(store, "older one")
    stored_run(store, "newer one")
    mine = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(mine, tiny_server, "train")
    pick_run(mine, "older one")
    assert "older one" in picker_text(mine)
    theirs = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(theirs, tiny_server, "train")
    set_number(theirs, "Batch size", 256)
    start_run(theirs, epochs=1, name="their run")
    wait_for_result(store, "their run")
    mine.get_by_text("their run").first.wait_for(state="attached")  # the new run is listed here too, untouched...
    set_number(mine, "Seed", 1)  # ...and after any rerun of this page
    time.sleep(1.0)
    assert "older one" in picker_text(mine)  # ...but this session still shows its own choice


def test_a_markdown_run_name_makes_the_browser_fetch_nothing(browser, tmp_path):
    """`![t](http://127.0.0.1:PORT/track.png)` as a run name is shown as text: no request."""
    hits = []

    class Tracker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook's name
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args):
            pass

    tracker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tracker)
    threading.Thread(target=tracker.serve_forever, daemon=True).start()
    name = f"![t](http://127.0.0.1:{tracker.server_port}/track.png) <img src='http://127.0.0.1:{tracker.server_port}/track.png?html'>"
    store = RunStore(tmp_path / "runs")
    stored_run(store, name)
    server = StreamlitServer(tmp_path / "runs", tmp_path / "log").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, server, "train")
        page.get_by_text("Status:").wait_for()
        time.sleep(1.5)
        page.locator("h3", has_text="![t](http://127.0.0.1").wait_for(timeout=10_000)  # shown as the text it is
        page.get_by_text("Rename or delete the selected run").click()
        page.get_by_role("button", name="Delete run").click()
        page.get_by_text("It goes to the trash").wait_for()  # the confirmation quotes the name too
        time.sleep(1.5)
        urllib.request.urlopen(f"http://127.0.0.1:{tracker.server_port}/control").read()  # the tracker works
    finally:
        server.stop()
        tracker.shutdown()
    assert hits == ["/control"], hits


def test_run_list_follows_runs_that_change_while_another_is_shown(browser, tiny_server):
    """The Run picker's status labels follow the live status even while a finished run is
    shown (no stale "queued" or "running" after the run ended)."""
    stored_run(RunStore(tiny_server.runs_dir), "an old run")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(page, tiny_server, "train")
    set_number(page, "Batch size", 256)
    start_run(page, epochs=30, name="quick")  # ~15 s here: the pick below lands while it trains
    # Start shows the new run, and the chosen run's label changes as it starts and as it ends:
    # each redraws the picker's value, which closes a list open at that moment (the browser's
    # select does). So pick while it trains, not right after Start.
    page.locator("[data-testid=stProgress]").wait_for(timeout=60_000)
    pick_run(page, "an old run")  # a finished run: its panel has nothing to poll for
    wait_for_result(RunStore(tiny_server.runs_dir), "quick")
    time.sleep(2.5)  # a poll or two
    page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True)).click()
    options = page.get_by_role("option").all_inner_texts()
    assert any("quick · finished" in o for o in options), options
    assert "an old run" in picker_text(page)


def overflowing_tables(page) -> list:
    """[scrollWidth, clientWidth] of every table whose columns do not fit its width."""
    page.wait_for_selector("[data-testid=stDataFrame] .dvn-scroller")
    return page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid=stDataFrame] .dvn-scroller'))
        .map(e => [e.scrollWidth, e.clientWidth]).filter(([s, c]) => s > c + 1)""")


def test_tables_fit_at_1400_and_delete_asks_and_undoes(browser, tmp_path):
    store = RunStore(tmp_path / "runs", clock=StepClock())  # ids a second apart, in the order made
    for name in ["first", "a rather long run name " * 8, "third"]:
        stored_run(store, name.strip(), epochs_done=2, epochs=20)
    server = StreamlitServer(tmp_path / "runs", tmp_path / "log").start()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        open_page(page, server)  # the router first: see the report on deep links to a fresh server
        open_page(page, server, "train")
        page.get_by_text("All runs").scroll_into_view_if_needed()
        assert overflowing_tables(page) == []
        page.get_by_text("Rename or delete the selected run").click()
        page.get_by_role("button", name="Delete run").click()
        page.get_by_text("It goes to the trash").wait_for()
        assert len(store.ids()) == 3  # nothing deleted before the confirmation
        page.get_by_role("button", name="Yes, delete").click()
        page.get_by_text("it is in the trash").wait_for()
        assert len(store.ids()) == 2 and [r.name for r in store.trashed()] == ["third"]
        page.get_by_role("button", name="Undo").click()
        page.locator("h3", has_text="third").wait_for()
        assert len(store.ids()) == 3 and store.trashed() == []
        page.get_by_role("link", name="Compare").click()
        page.get_by_role("heading", name="Compare").wait_for()
        assert overflowing_tables(page) == []
    finally:
        server.stop()


def test_selection_holds_when_the_chosen_runs_status_changes(browser, tiny_server):
    """The picker's label carries the run's status, and the browser sends back the label it
    last drew: when the chosen run ends, the page must keep it chosen, not jump to the
    newest run (where a Stop or Delete would then land)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(page, tiny_server, "train")
    set_number(page, "Batch size", 256)
    start_run(page, epochs=30, name="chosen")
    page.get_by_text("Waiting in the queue").or_(page.locator("[data-testid=stProgress]")).first.wait_for(timeout=60_000)
    start_run(page, epochs=200, name="newest")  # queued behind it, then training: first in every list
    page.get_by_text("Waiting in the queue").wait_for()
    for _attempt in range(6):  # the list redraws as runs change under load; pick again until it holds
        try:
            page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text("Run", exact=True)).click(timeout=5_000)
            page.get_by_role("option").filter(has_text="chosen").first.click(timeout=5_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    time.sleep(1.0)
    assert "chosen" in picker_text(page)
    store = RunStore(tiny_server.runs_dir)
    chosen = next(r.id for r in store.list() if r.name == "chosen")
    deadline = time.time() + 120
    while store.read(chosen).result is None:
        assert time.time() < deadline, "the run did not finish"
        time.sleep(0.5)
    page.locator("[data-testid=stMarkdownContainer]", has_text="Status:").filter(has_text="finished").wait_for(timeout=30_000)
    time.sleep(2.5)  # more polls and redraws
    assert "chosen · finished" in picker_text(page)
    assert page.locator("h3", has_text="chosen").count() == 1
    assert page.get_by_role("button", name="Stop").count() == 0  # the running one is not shown, so not stoppable here


def in_view(page, locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_start_brings_the_new_runs_live_panel_into_view(browser, tiny_server):
    """Issue 23 item 8: at 1400x900 Start is below the fold and the live panel is at the top
    right; after Start the user sees their run's live panel, not only a toast."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    open_page(page, tiny_server, "train")
    set_number(page, "Batch size", 256)
    start_run(page, epochs=3, name="just started")  # the click scrolls the page down to Start
    page.locator("h3", has_text="just started").wait_for()
    status = page.locator("[data-testid=stMarkdownContainer]", has_text="Status:").first
    status.wait_for()
    deadline = time.time() + 10
    while not in_view(page, status, 900) and time.time() < deadline:
        time.sleep(0.2)
    assert in_view(page, status, 900), f"the live panel's status line is at {status.bounding_box()} in a 900 px high window"
    assert in_view(page, page.locator("h3", has_text="just started"), 900)  # and whose run it is
    wait_for_result(RunStore(tiny_server.runs_dir), "just started")
