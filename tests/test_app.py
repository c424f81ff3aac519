"""AppTest: every page runs without an exception and its key widgets work."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import streamlit as st
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from fmnist_core.data import CLASSES
from tests.conftest import ROOT, frame_with

APP = str(ROOT / "streamlit_app.py")


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app with an empty run store of its own (and a fresh run manager)."""
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()

    def open_page(page: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        if page:
            at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
        return at

    yield open_page
    st.cache_resource.clear()


def test_home_shows_data_and_zoo(app):
    at = app()
    assert at.title[0].value.endswith("Fashion-MNIST Studio")
    counts = at.table[0].value
    assert counts["train"].tolist() == [6000] * 10 and counts["test"].tolist() == [1000] * 10
    labels = [e.label for e in at.expander]
    assert any("cnn_c" in label and "35,044" in label for label in labels)
    assert len(labels) >= 8


def test_home_has_three_ways_in_and_says_what_the_report_is(app):
    at = app()
    links = {link.proto.label: (link.proto.page, link.proto.query_string) for link in at.get("page_link")}
    assert links["Try a trained model"][0].endswith("predict")
    assert links["Train a 90% model in under a minute"] == (links["Train a 90% model in under a minute"][0], "preset=fast")
    assert links["Train a 90% model in under a minute"][0].endswith("train")
    assert links["See the report reproduced"][0].endswith("compare")
    assert any(m.value.startswith("**The report** is the course report this Studio grew from") for m in at.markdown)


def test_train_opens_with_the_preset_of_the_link(app):
    """Home's 'Train a 90% model' start: /train?preset=fast fills the form with the fast recipe, once."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["preset"] = "fast"
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key="preset").value == "fast"
    assert at.selectbox(key="f_model").value == "fast_cnn" and at.number_input(key="f_epochs").value == 2
    assert "preset" not in at.query_params  # applied once: a refresh keeps the user's edits


def test_train_preset_fills_the_form(app):
    at = app("train")
    at.selectbox(key="preset").set_value("report_cnn_c").run()
    assert at.selectbox(key="f_model").value == "cnn_c"
    assert at.number_input(key="f_lr").value == pytest.approx(0.01)
    assert at.number_input(key="f_batch_size").value == 32
    assert at.number_input(key="f_epochs").value == 20
    assert at.selectbox(key="f_init").value == "custom"
    at.selectbox(key="preset").set_value("report_mlp4_patch").run()
    assert at.selectbox(key="f_model").value == "mlp4" and at.selectbox(key="f_patch").value == 14
    assert at.number_input(key="f_lr").value == pytest.approx(0.1)


@pytest.mark.parametrize("key, value, words", [
    ("f_lr", -1.0, "-1 is out of range"), ("f_lr", 0.0, "0 is out of range"),
    ("f_batch_size", 0, "0 is out of range; use 1 to 8192"), ("f_epochs", 500, "500 is out of range; use 1 to 200"),
])
def test_train_refuses_invalid_input_and_starts_nothing(app, tmp_path, key, value, words):
    """The value typed is the value checked (the widget has no limits of its own to fall
    back on), its field says what is wrong, and Start cannot be pressed."""
    at = app("train")
    at.number_input(key=key).set_value(value).run()
    assert not at.exception
    assert at.button(key="start").disabled
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_train_a_short_run_through_the_page(app, tmp_path):
    at = app("train")
    at.selectbox(key="f_model").set_value("cnn_a").run()
    at.number_input(key="f_batch_size").set_value(1024).run()
    at.number_input(key="f_epochs").set_value(1).run()
    at.selectbox(key="f_optimizer").set_value("adam").run()
    at.text_input(key="f_name").set_value("page run").run()
    at.button(key="start").click().run()
    assert not at.exception
    deadline = time.time() + 120
    while True:
        at.run()
        table = frame_with(at, "best_test_accuracy")
        if table is not None and table["status"].tolist() == ["finished"]:
            break
        assert time.time() < deadline, "the run did not finish"
        time.sleep(0.5)
    assert table["name"].tolist() == ["page run"]
    assert table["best_test_accuracy"].iloc[0] > 60
    assert any("Test accuracy" in m.label for m in at.metric)


def png(draw) -> bytes:
    image = Image.new("RGB", (300, 300), "white")
    draw(ImageDraw.Draw(image))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_predict_upload_shows_input_and_probabilities(app):
    at = app("predict")
    assert at.selectbox(key="model_choice").options, "no shipped checkpoint offered"
    trouser = png(lambda d: (d.rectangle([110, 20, 145, 280], fill="black"), d.rectangle([155, 20, 190, 280], fill="black"), d.rectangle([110, 20, 190, 70], fill="black")))
    at.file_uploader(key="images").set_value([("trouser.png", trouser, "image/png")]).run()
    assert not at.exception
    images = at.get("image")
    assert len(images) == 2  # the upload and the 28x28 model input
    assert images[1].captions == ["what the model sees (28x28)"]
    assert any("Trouser" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_predict_bad_upload_gets_one_message(app):
    at = app("predict")
    at.file_uploader(key="images").set_value([("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")]).run()
    assert not at.exception
    assert any("broken.png: the image is damaged" in e.value.replace("\\", "") for e in at.error)  # the name is escaped Markdown


def test_predict_bad_checkpoint_upload(app):
    at = app("predict")
    at.file_uploader(key="ckpt_upload").set_value(("evil.safetensors", b"\x00" * 64, "application/octet-stream")).run()
    assert not at.exception
    assert any("Cannot use this checkpoint" in e.value for e in at.error)


def test_predict_every_model_and_examples(app):
    at = app("predict")
    at.toggle(key="compare_all").set_value(True).run()
    at.selectbox(key="example_class").set_value("Sneaker").run()
    at.button(key="random_example").click().run()
    assert not at.exception
    verdicts = [m.value for m in at.markdown if "true class" in m.value]
    assert len(verdicts) == 1 and "of 2 models" in verdicts[0]  # the input and its answer shown once
    answers = at.table[0].value  # then a row per model
    assert answers.index.tolist() == ["resnet_fm_best", "cnn_c_report"]
    assert answers.columns.tolist() == ["Test acc.", "Top class"]
    assert answers["Test acc."].tolist() == ["93.8%", "90.6%"]
    top_classes = [cell.rsplit(" ", 1)[0].replace("\u2011", "-") for cell in answers["Top class"]]
    assert set(top_classes) <= set(CLASSES) and all(cell.endswith("%") for cell in answers["Top class"])


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_predict_shows_16bit_and_float_uploads_and_every_later_file(app):
    """A 16-bit PNG used to crash the result list (`cannot write mode I;16 as JPEG`) and
    hide every later file; a float TIFF read as blank."""
    import numpy as np

    sixteen = np.full((300, 200), 60000, np.uint16)
    sixteen[40:260, 50:150] = 2000  # a dark block on a light 16-bit background
    floats = np.full((300, 200), 0.9, np.float32)
    floats[40:260, 60:140] = 0.05
    at = app("predict")
    at.file_uploader(key="images").set_value([
        ("sixteen.png", image_bytes(Image.fromarray(sixteen)), "image/png"),
        ("float.tiff", image_bytes(Image.fromarray(floats), "TIFF"), "image/tiff"),
        ("last.png", png(lambda d: d.rectangle([100, 40, 200, 260], fill="black")), "image/png"),
    ]).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("image")) == 6  # each file: its 8-bit preview and the 28x28 input


def test_predict_upload_limit_is_streamlits(app):
    """The page's decoder gets server.maxUploadSize, the one limit the drop zone states."""
    st.config.set_option("server.maxUploadSize", 1)
    try:
        at = app("predict")
        noise = Image.frombytes("L", (1200, 1200), bytes(np.random.default_rng(0).integers(0, 256, 1200 * 1200, dtype=np.uint8)))
        at.file_uploader(key="images").set_value([("big.png", image_bytes(noise), "image/png")]).run()
    finally:
        st.config.set_option("server.maxUploadSize", 50)
    assert any("the limit for images is 1 MB" in e.value for e in at.error), [e.value for e in at.error]
