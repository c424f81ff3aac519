"""Launch a small sweep from the Sweep page, watch its trials run and finish on Ray; stop a long one."""

import time

from fmnist_core.store.run_store import RunStore
from fmnist_core.sweeps.sweep_store import SweepStore
from tests.helpers.server import open_page


def status_text(page) -> str:
    return page.locator("[data-testid=stMarkdownContainer]", has_text="Status:").first.inner_text()


def fill(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    time.sleep(0.8)  # let the rerun land before the next widget


def small_sweep(page, epochs: int) -> None:
    """Two learning rates of cnn_c on the first 2,000 images (the form's "Quick try")."""
    fill(page, "values, comma-separated", "0.01, 0.05")
    fill(page, "Epochs per trial", epochs)
    page.get_by_text("Quick try").click()
    fill(page, "Train and test on the first N images (0 = all)", 2000)
    page.get_by_text("2 trial(s), 2 at a time.").wait_for()


def test_launch_a_sweep_and_watch_it_finish(page, server):
    open_page(page, server, "sweep")
    page.get_by_text("No sweeps yet").wait_for()
    small_sweep(page, epochs=1)
    page.get_by_role("button", name="Launch sweep").click()

    # The page polls the run store: Ray starts, then the trials run and finish.
    page.wait_for_function("[...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                           ".some(e => /Status:.*(running|finished)/.test(e.innerText))", timeout=90_000)
    page.get_by_text("Best so far").wait_for(timeout=120_000)
    page.wait_for_function("[...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                           ".some(e => /Status:.*finished/.test(e.innerText))", timeout=120_000)
    assert page.locator("[data-testid=stException]").count() == 0
    train = page.get_by_role("link", name="Train this config").get_attribute("href")
    assert "lr=0.0" in train and "model=cnn_c" in train and "epochs=1" in train
    assert "compare?runs=sweep-" in page.get_by_role("link", name="Compare these").get_attribute("href")
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 1")

    # A refresh finds the sweep and its trials again.
    page.reload()
    page.get_by_text("Best so far").wait_for(timeout=30_000)
    assert "finished" in status_text(page)

    # Stop: a long sweep, stopped after its first epochs; every trial keeps them.
    small_sweep(page, epochs=40)
    page.get_by_role("button", name="Launch sweep").click()
    page.wait_for_function("[...document.querySelectorAll('[data-testid=stMarkdownContainer]')]"
                           ".some(e => /Status:.*running/.test(e.innerText))", timeout=90_000)
    page.get_by_text("Best so far").wait_for(timeout=120_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("stopped by request").wait_for(timeout=90_000)
    assert "stopped" in status_text(page)
    store = RunStore(server.runs_dir)
    sweep_id = SweepStore(store).ids()[0]
    trials = [r for r in store.list() if r.sweep == sweep_id]
    assert len(trials) == 2 and all(r.status == "stopped" and 1 <= len(r.history) < 40 for r in trials), [(r.status, len(r.history)) for r in trials]
