"""An anonymous visitor keeps their runs across a refresh, a new tab and a server restart (the
signed cookie of fmnist_core.formats.identity), and another browser, or a forged cookie, does not get
them. After the restart, with no admin who can log in, anyone may stop what the old server
left queued. Two browser contexts are two browsers: each has its own cookies."""

from __future__ import annotations

import json
import re
import time

from fmnist_core.store.run_store import RunStore
from tests.helpers.browser import pick_run, run_named
from tests.helpers.data import make_idx_dir
from tests.helpers.server import StreamlitServer, open_page

COOKIE = "fmnist_visitor"


def start(page, name: str) -> None:
    """Queue a run long enough to last the test: 200 epochs."""
    for label, value in (("Epochs", 200), ("Run name", name)):
        page.get_by_label(label, exact=True).fill(str(value))
        page.get_by_label(label, exact=True).press("Enter")
        time.sleep(0.6)  # let the rerun land before the next widget
    page.get_by_role("button", name="Start training").click()


def buttons(page) -> dict:
    """Whether the selected run's Stop (or Cancel, or Resume) and Rename are enabled, and which it is."""
    action = page.get_by_role("button", name=re.compile(r"^(Stop|Cancel|Resume)$"))
    action.wait_for()
    if not page.get_by_label("New name").is_visible():
        page.get_by_text("Rename or delete the selected run").click()
    rename = page.get_by_role("button", name="Rename", exact=True)
    rename.wait_for()
    return {"action": action.is_enabled(), "rename": rename.is_enabled(), "label": action.inner_text().strip()}


def new_page(context):
    page = context.new_page()
    page.set_default_timeout(90_000)  # this machine is shared with other test runs
    return page


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.3)


def named(runs_dir, name: str) -> bool:
    return any(json.loads(p.read_text())["name"] == name for p in runs_dir.glob("*/run.json"))


def visitor_cookie(context) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == COOKIE), None)


def test_a_visitor_keeps_their_runs_across_refresh_tab_and_restart(browser, tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_STUDIO_MODE", "shared")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(make_idx_dir(tmp_path / "data", n_train=6000, n_test=200)))
    runs_dir = tmp_path / "runs"
    server = StreamlitServer(runs_dir, tmp_path / "first.log").start()
    ann_browser, bob_browser = (browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2))
    try:
        ann = new_page(ann_browser)
        open_page(ann, server, "train")
        start(ann, "ann long")  # still training when the server stops
        start(ann, "ann queued")
        ann.get_by_text("Waiting in the queue").wait_for()
        ann_id = run_named(runs_dir, "ann long")["owner"]
        token = visitor_cookie(ann_browser)
        assert token and token.split(".")[0] == ann_id.removeprefix("anon:")  # the cookie carries her id, signed

        # A refresh: the same visitor (it was a new one before the cookie).
        ann.reload()
        ann.wait_for_selector("h1")
        pick_run(ann, "ann long")
        assert buttons(ann).items() >= {"action": True, "rename": True}.items()
        ann.get_by_label("New name").fill("ann renamed")
        ann.get_by_role("button", name="Rename", exact=True).click()
        wait_until(lambda: named(runs_dir, "ann renamed"), "Ann could not rename her run after a refresh", 30)

        # A new tab of the same browser: the same visitor.
        tab = new_page(ann_browser)
        open_page(tab, server, "train")
        pick_run(tab, "ann queued")
        assert buttons(tab).items() >= {"action": True, "rename": True}.items()
        for page in (ann, tab):  # each open Train page polls the server: keep this loaded machine's browser light
            page.close()

        # Another browser is another visitor, and so is a browser that forges Ann's cookie
        # (her id, a made-up signature): both see her runs locked, and get an id of their own.
        bob = new_page(bob_browser)
        open_page(bob, server, "train")
        pick_run(bob, "ann renamed")
        assert buttons(bob).items() >= {"action": False, "rename": False}.items()
        assert visitor_cookie(bob_browser).split(".")[0] != ann_id.removeprefix("anon:")
        bob.close()
        forger_browser = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            forger_browser.add_cookies([{"name": COOKIE, "value": f"{ann_id.removeprefix('anon:')}.{'0' * 64}",
                                         "url": server.url}])
            forger = new_page(forger_browser)
            open_page(forger, server, "train")
            pick_run(forger, "ann renamed")
            assert buttons(forger).items() >= {"action": False, "rename": False}.items()
            time.sleep(1)
            assert visitor_cookie(forger_browser).split(".")[0] != ann_id.removeprefix("anon:")  # replaced by a new visitor's
        finally:
            forger_browser.close()

        # The server restarts: her training run is interrupted, her queued one is queued again
        # (and taken up by the new server).
        queued_id = run_named(runs_dir, "ann queued")["id"]
        server.stop()
        server = StreamlitServer(runs_dir, tmp_path / "second.log").start()
        # Ann, with the same browser (cookies are per host, not per port), is still herself.
        ann = new_page(ann_browser)
        open_page(ann, server, "train")
        ann.get_by_text("All runs").wait_for(timeout=300_000)  # a fresh server, training at once: its first page is slow here
        pick_run(ann, "ann queued")
        assert buttons(ann).items() >= {"action": True, "rename": True}.items()
        ann.close()
        # Bob may not rename her run, but this Studio has no admin who could log in, so he may
        # stop or cancel what the old server left queued, which otherwise nobody could (or, had it
        # started on the old server before the restart, resume it: interrupted is an orphan too).
        bob = new_page(bob_browser)
        open_page(bob, server, "train")
        pick_run(bob, "ann queued")
        state = buttons(bob)
        assert state.items() >= {"action": True, "rename": False}.items(), state
        bob.get_by_role("button", name=state["label"], exact=True).click()
        after = {"Stop": ("stopped",), "Cancel": ("cancelled",), "Resume": ("queued", "running")}[state["label"]]
        wait_until(lambda: RunStore(runs_dir).read(queued_id).status in after, f"Bob's {state['label']} did nothing")
        assert bob.locator("[data-testid=stException]").count() == 0
    finally:
        ann_browser.close()
        bob_browser.close()
        server.stop()

