"""'Every model' on Predict with 13 checkpoints, at 1400 px and on a phone (390x844):
no model name squeezed narrower than its words, nothing off the right edge."""

from __future__ import annotations

import pytest
import torch

from fmnist_core.base.paths import pretrained_dir
from fmnist_core.formats.checkpoint import save_checkpoint
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.models import create_model
from fmnist_core.store.run_store import RunStore
from tests.helpers.browser import upload_a_shoe
from tests.helpers.server import StreamlitServer, open_page

# Ten runs beside the shipped models: short, long, spaced, hyphenated, repeated names.
RUN_NAMES = ["cnn_a lr 0.1", "augmented resnet, 12 epochs with one-cycle and label smoothing", "x",
             "20261130-071303-cnn_c-5c59", "Émilie's second try", "run", "run", "mlp4 patch 14",
             "width_sixteen_bf16_fast", "b"]
SHIPPED = sorted(p.name for p in pretrained_dir().iterdir() if (p / "model.safetensors").is_file())
MODELS = len(RUN_NAMES) + len(SHIPPED)  # 13: ten runs and three shipped models
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def server_with_every_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("every_model")
    store = RunStore(folder / "runs")
    for seed, name in enumerate(RUN_NAMES):
        config = TrainConfig(model="cnn_a", epochs=1, name=name)
        path = store.create(config)
        torch.manual_seed(seed)  # distinct weights: identical files would be listed once
        save_checkpoint(create_model("cnn_a"), path / "model.safetensors", config.to_dict(), {"test_accuracy": 80.0 + seed})
        store.write_result(path.name, {"status": "finished", "message": "", "epochs_done": 1, "test_accuracy": 80.0 + seed})
    server = StreamlitServer(folder / "runs", folder / "streamlit.log").start()
    yield server
    server.stop()


# For each model name in the answers table: is any of its words wider than its cell? And
# does anything on the page reach past the viewport's right edge?
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const measure = document.createElement('canvas').getContext('2d');
  // only what is shown: the test-set examples tab holds a table of its own, hidden
  const cells = [...document.querySelectorAll('[data-testid=stTable] tbody th')].filter(c => c.checkVisibility());
  for (const cell of cells) {
    const style = getComputedStyle(cell);
    measure.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    for (const word of cell.innerText.split(/\\s+/)) {
      const need = measure.measureText(word).width;
      if (need > room + 1) problems.push(`"${word}" needs ${need.toFixed(0)} px, its cell has ${room.toFixed(0)}`);
    }
  }
  const right = document.documentElement.clientWidth;
  for (const el of document.querySelectorAll('[data-testid=stMain] *')) {
    const box = el.getBoundingClientRect();
    if (box.width > 0 && box.right > right + 1 && !el.closest('[data-testid=stTabs] [role=tablist]')) {
      problems.push(`${el.tagName}.${el.className} ends at ${box.right.toFixed(0)} > ${right}`);
    }
  }
  for (const table of [...document.querySelectorAll('[data-testid=stTable]')].filter(t => t.checkVisibility())) {
    if (table.scrollWidth > table.clientWidth + 1) problems.push(`the table scrolls: ${table.scrollWidth} > ${table.clientWidth}`);
  }
  return {problems: problems.slice(0, 10), names: cells.length};
}"""


def draw_a_trouser(page) -> None:
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + 100, y0 + 30)
    page.mouse.down()
    for y in range(30, 260, 12):
        page.mouse.move(x0 + 100, y0 + y, steps=2)
        page.mouse.move(x0 + 180, y0 + y, steps=3)
    page.mouse.up()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1400px", "phone"])
@pytest.mark.parametrize("source", ["draw", "upload"])
def test_every_model_is_readable(browser, server_with_every_model, tmp_path, viewport, source):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        open_page(page, server_with_every_model, "predict")
        page.get_by_text("Every model", exact=True).click()
        if source == "draw":
            draw_a_trouser(page)
        else:
            upload_a_shoe(page, tmp_path)
        page.wait_for_function("[...document.querySelectorAll('[data-testid=stTable] tbody tr')].filter(r => r.checkVisibility()).length >= " + str(MODELS))
        page.wait_for_function("[...document.querySelectorAll('[data-testid=stVegaLiteChart]')].some(c => c.innerText.includes('per model') || c.querySelector('canvas,svg'))")
        page.wait_for_timeout(500)  # let the layout settle after the last element arrives
        page.screenshot(path=str(tmp_path / "every_model.png"), full_page=True)
        found = page.evaluate(LAYOUT_PROBLEMS)
        assert found["names"] == MODELS
        assert found["problems"] == [], found["problems"]
        assert page.locator("[data-testid=stException]").count() == 0
        tab = page.get_by_role("tabpanel", name="Draw" if source == "draw" else "Upload")
        assert tab.get_by_text("what the model sees (28x28)").count() == 1  # the input shown once
    finally:
        context.close()
