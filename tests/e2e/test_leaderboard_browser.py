"""The leaderboard in the browser, shared mode: two visitors (two browser contexts) each have
runs; each sees both entries in the same order, and only their own marked as theirs."""

from __future__ import annotations

from playwright.sync_api import expect

from fmnist_core.formats.identity import ANONYMOUS_PREFIX, COOKIE_NAME
from fmnist_core.store.leaderboard import owner_label
from fmnist_core.store.run_store import RunStore
from tests.helpers.browser import grid_overflow
from tests.helpers.runs import add_run
from tests.helpers.server import open_page

LEADERBOARD = 1  # the dataframes of Compare's Leaderboard view: the runs, the leaderboard


def visitor_id(page) -> str:
    """The id this browser's cookie proves (the sidebar's script sets it on the first page)."""
    page.wait_for_function(f"document.cookie.includes('{COOKIE_NAME}=')")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE_NAME)
    return ANONYMOUS_PREFIX + token.split(".")[0]


def leaderboard_rows(page) -> list[list[str]]:
    """The leaderboard's rows as the grid's accessible cells hold them (raw values), top to bottom."""
    table = page.locator("[data-testid=stDataFrame]").nth(LEADERBOARD)
    table.scroll_into_view_if_needed()
    expect(table.get_by_text("ann's best", exact=True)).to_have_count(1, timeout=30_000)
    return table.evaluate("f => [...f.querySelectorAll('tbody tr')].map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))")


def test_two_visitors_see_one_ranking_and_only_their_own_entry_as_theirs(shared_server, visitor):
    ann, bob = visitor(), visitor()
    open_page(ann, shared_server, "compare")
    open_page(bob, shared_server, "compare")
    ann_id, bob_id = visitor_id(ann), visitor_id(bob)
    assert ann_id != bob_id
    store = RunStore(shared_server.runs_dir)
    add_run(store, "ann's first", ann_id, 88.0, "2026-12-01T10:00:00+00:00")
    add_run(store, "ann's best", ann_id, 91.0, "2026-12-01T10:01:00+00:00")
    add_run(store, "bob's", bob_id, 92.5, "2026-12-01T10:02:00+00:00")

    for page in (ann, bob):
        open_page(page, shared_server, "compare?view=Leaderboard")  # a reload: the cookie keeps each one who they are
        rows = leaderboard_rows(page)
        assert len(rows) == 2, rows
        assert [row[3] for row in rows] == ["bob's", "ann's best"], rows  # rank, who, yours, name, ...
        assert [row[0] for row in rows] == ["1", "2"] and rows[0][4].startswith("92.5") and rows[1][4].startswith("91"), rows
    # Each is "you" on their own row only; the other is an anonymous visitor's tag, never their id
    ann_rows, bob_rows = leaderboard_rows(ann), leaderboard_rows(bob)
    assert [row[1:3] for row in ann_rows] == [[owner_label(bob_id, ann_id), "false"], ["you", "true"]]
    assert [row[1:3] for row in bob_rows] == [["you", "true"], [owner_label(ann_id, bob_id), "false"]]
    assert owner_label(bob_id, ann_id).startswith("anonymous visitor ")
    assert ann_id.removeprefix(ANONYMOUS_PREFIX) not in str(bob_rows)
    overflow = grid_overflow(ann.locator("[data-testid=stDataFrame]").nth(LEADERBOARD))  # the page is 1400 px wide
    assert overflow["scroll"] <= overflow["client"], f"the leaderboard scrolls sideways: {overflow}"
    assert ann.locator("[data-testid=stException]").count() == 0 and bob.locator("[data-testid=stException]").count() == 0
