import pytest
from playwright.sync_api import expect

from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.run_store import RunStore
from fmnist_core.training.run_manager import RunManager
from tests.helpers.browser import grid_overflow
from tests.helpers.server import StreamlitServer, open_page


@pytest.fixture(scope="module")
def server_with_two_runs(tmp_path_factory, tiny_data):
    folder = tmp_path_factory.mktemp("compare")
    manager = RunManager(RunStore(folder / "runs"), data_loader=lambda: tiny_data)
    for lr, name in ((0.01, "slow lr"), (0.1, "fast lr")):
        manager.submit(TrainConfig(model="cnn_a", optimizer="sgd", lr=lr, batch_size=32, epochs=2, threads=1, name=name))
    assert manager.wait_idle(120)
    server = StreamlitServer(folder / "runs", folder / "streamlit.log").start()
    yield server
    server.stop()


def test_overlay_chart_and_table(page, server_with_two_runs):
    open_page(page, server_with_two_runs, "compare")
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2")  # the Curves view's overlays
    table = page.locator("[data-testid=stDataFrame]").first
    # The grid fills its (accessible) cells after the charts can be drawn: wait, don't count once.
    expect(table.get_by_text("slow lr")).to_have_count(1, timeout=15_000)
    expect(table.get_by_text("fast lr")).to_have_count(1, timeout=15_000)
    expect(table.get_by_text("resnet_fm_best")).to_have_count(1, timeout=15_000)  # shipped models are listed beside runs
    page.get_by_role("tab", name="What a model gets wrong").click()  # a view runs when opened
    page.get_by_label("True class").wait_for()
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart]').length >= 2")  # confusion, per class
    assert "view=What+a+model+gets+wrong" in page.url  # the address holds the view
    page.get_by_role("tab", name="Curves").click()
    # Filtering the table to the two runs overlays just them, and says what differs.
    page.get_by_label("Name contains").fill("lr")
    page.get_by_label("Name contains").press("Enter")
    page.get_by_text("only learning rate differs").wait_for()
    assert page.locator("[data-testid=stException]").count() == 0


def test_table1_and_the_runs_table_fit_1400_px(page, server):
    """Issue 23: at 1400x900 Table 1 scrolled sideways ("Seconds (ours)" and "Status" cut off).
    (Its figures' rounding and blanks: test_compare, from the column settings the page sends;
    the grid's accessible cells hold raw values, not what the canvas draws.)"""
    page.set_viewport_size({"width": 1400, "height": 900})
    open_page(page, server, "compare?view=Table+1")  # a fresh clone: Table 1 from results/table1.csv; Home links here
    page.wait_for_function("document.querySelectorAll('[data-testid=stDataFrame]').length >= 2")  # the runs, Table 1
    table = page.locator("[data-testid=stDataFrame]").last  # dataframes carry no st-key class; Table 1's view ends the page
    table.scroll_into_view_if_needed()
    expect(table.get_by_text("CNN B (as published: double softmax)", exact=True)).to_have_count(1, timeout=30_000)
    page.wait_for_timeout(500)  # the grid sizes its columns once drawn
    overflow = grid_overflow(table)
    assert overflow["scroll"] <= overflow["client"], f"Table 1 scrolls sideways: {overflow}"
    overflow = grid_overflow(page.locator("[data-testid=stDataFrame]").first)
    assert overflow["scroll"] <= overflow["client"], f"the runs table scrolls sideways: {overflow}"
