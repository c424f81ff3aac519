"""Shared mode in the browser: two visitors (two browser contexts, so two sessions) on one
server started with FMNIST_STUDIO_MODE=shared."""

from __future__ import annotations

import json
import time

from tests.helpers.browser import pick_run, run_named
from tests.helpers.server import open_page


def start_run(page, epochs: int, name: str) -> None:
    for label, value in (("Epochs", epochs), ("Run name", name)):
        page.get_by_label(label, exact=True).fill(str(value))
        page.get_by_label(label, exact=True).press("Enter")
        time.sleep(0.6)  # let the rerun land before the next widget
    page.get_by_role("button", name="Start training").click()


# What a visitor can do from the browser's developer tools: the button's own click handler
# ignores clicks while it is disabled, so call Streamlit's widget manager the way that
# handler does, and the server receives the click.
FORGE_CLICK = """b => {
  const fiber = Object.keys(b).find(k => k.startsWith('__reactFiber$'));
  for (let f = b[fiber]; f; f = f.return) {
    const p = f.memoizedProps;
    if (p && p.widgetMgr && p.element && p.element.id) {
      p.widgetMgr.setTriggerValue(p.element.id, {formId: p.element.formId, fragmentId: p.fragmentId, fromUser: true});
      return p.element.id;
    }
  }
  return null;
}"""


def forge_click(button) -> None:
    assert button.evaluate(FORGE_CLICK), "no Streamlit widget behind this button"
    time.sleep(1.5)  # the rerun it causes


def test_a_visitor_cannot_stop_rename_or_delete_anothers_run(shared_server, visitor):
    runs_dir = shared_server.runs_dir
    ann, bob = visitor(), visitor()

    open_page(ann, shared_server, "")
    # Ann trains one run and queues a second: her limit (2 per visitor) refuses a third.
    open_page(ann, shared_server, "train")
    ann.get_by_text("Shared server: 0 of your 2 runs in use").wait_for()
    ann.get_by_text("You are an anonymous visitor").wait_for()  # the sidebar, on every page
    start_run(ann, epochs=20, name="ann long")  # long enough to still be running at the end
    ann.locator("[data-testid=stProgress]").wait_for(timeout=60_000)
    start_run(ann, epochs=1, name="ann queued")
    ann.get_by_text("Waiting in the queue").wait_for()
    start_run(ann, epochs=1, name="ann third")
    ann.get_by_text("You already have 2 runs queued or training, the most this server allows per visitor").wait_for()
    assert sorted(json.loads(p.read_text())["name"] for p in runs_dir.glob("*/run.json")) == ["ann long", "ann queued"]
    ann_id = run_named(runs_dir, "ann long")["owner"]
    assert ann_id.startswith("anon:")

    # Bob sees Ann's running run with Stop, Rename and Delete off, and the reason.
    open_page(bob, shared_server, "train")
    pick_run(bob, "ann long")
    stop = bob.get_by_role("button", name="Stop", exact=True)
    stop.wait_for()
    assert stop.is_disabled()
    bob.get_by_text("Rename or delete the selected run").click()
    rename, delete = bob.get_by_role("button", name="Rename", exact=True), bob.get_by_role("button", name="Delete run", exact=True)
    assert rename.is_disabled() and delete.is_disabled()
    assert bob.get_by_label("New name").is_disabled()

    # Forged clicks reach the server and change nothing (Streamlit drops a disabled
    # widget's value; the run manager would refuse them too: tests/app/test_access.py).
    forge_click(stop)
    forge_click(rename)
    forge_click(delete)
    assert bob.locator("[data-testid=stException]").count() == 0
    info = run_named(runs_dir, "ann long")
    assert info["owner"] == ann_id
    assert not (runs_dir / info["id"] / "result.json").exists()  # still training: not stopped
    assert "running" in bob.locator("[data-testid=stMarkdownContainer]", has_text="Status:").first.inner_text()

    # Ann's limit is hers alone: Bob can still queue a run of his own.
    start_run(bob, epochs=1, name="bob's")
    bob.get_by_text("Waiting in the queue").wait_for()
    assert run_named(runs_dir, "bob's")["owner"] not in ("", ann_id)

    # Ann, the owner, can cancel her queued run (shown since she started it, in the same
    # tab: a reload would make her a new anonymous visitor).
    cancel = ann.get_by_role("button", name="Cancel", exact=True)
    assert cancel.is_enabled()
    result = runs_dir / run_named(runs_dir, "ann queued")["id"] / "result.json"
    cancel.click()
    # The page may move on from a cancelled, never-started run (hidden unless asked for):
    # the store says what happened.
    deadline = time.time() + 30
    while not (result.exists() and json.loads(result.read_text())["status"] == "cancelled"):
        assert time.time() < deadline, "Ann's queued run was not cancelled"
        time.sleep(0.3)
