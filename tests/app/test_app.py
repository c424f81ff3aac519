"""AppTest: every page runs without an exception and its key widgets work."""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from fmnist_core.images.data import CLASSES
from fmnist_core.modeling.recipes import RECIPES
from tests.helpers.pages import frame_with, open_tab, png, upload_tab
from tests.helpers.paths import APP
from tests.helpers.runs import StepClock, stored_run


def test_home_shows_data_and_zoo(app):
    at = app()
    assert at.title[0].value.endswith("Fashion-MNIST Studio")
    counts = at.table[0].value
    assert counts["train"].tolist() == [6000] * 10 and counts["test"].tolist() == [1000] * 10
    labels = [e.label for e in at.expander]
    assert any("cnn_c" in label and "35,044" in label for label in labels)
    assert len(labels) >= 8


def test_home_has_four_ways_in_and_says_what_the_report_is(app):
    at = app()
    links = {link.proto.label: (link.proto.page, link.proto.query_string) for link in at.get("page_link")}
    assert links["Try a trained model"][0].endswith("predict")
    assert links["Train a 90% model in under a minute"] == (links["Train a 90% model in under a minute"][0], "preset=fast")
    assert links["Train a 90% model in under a minute"][0].endswith("train")
    assert links["See the report reproduced"][0].endswith("compare")
    assert links["Search for better settings"][0].endswith("sweep")  # issue 23: Home had no way to Sweep
    assert any(m.value.startswith("**The report** is the course report this Studio grew from") for m in at.markdown)


def test_train_opens_with_the_preset_of_the_link(app):
    """Home's 'Train a 90% model' start: /train?preset=fast fills the form with the fast recipe, once."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["preset"] = "fast"
    at.run()
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert at.selectbox(key="preset").value == "fast"
    assert at.selectbox(key="f_model").value == RECIPES["fast"]["model"] and at.number_input(key="f_epochs").value == RECIPES["fast"]["epochs"]
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


def test_predict_upload_shows_input_and_probabilities(app):
    at = app("predict")
    assert at.selectbox(key="model_choice").options, "no shipped checkpoint offered"
    trouser = png(lambda d: (d.rectangle([110, 20, 145, 280], fill="black"), d.rectangle([155, 20, 190, 280], fill="black"), d.rectangle([110, 20, 190, 70], fill="black")))
    at.file_uploader(key="images").set_value([("trouser.png", trouser, "image/png")]).run()
    assert not at.exception
    images = upload_tab(at).get("image")
    assert len(images) == 3  # the upload, the 28x28 model input and its heatmap (ui/explain_panel.py)
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


def test_the_examples_tab_shows_an_example_of_the_chosen_class_at_once(app):
    """Issue 23: the tab was blank until its button was pressed."""
    at = open_tab(app("predict"), "Test-set examples")
    verdicts = [m.value for m in at.markdown if "true class" in m.value]
    assert len(verdicts) == 1 and f"true class **{at.selectbox(key='example_class').value}**" in verdicts[0]
    at.selectbox(key="example_class").set_value("Bag").run()  # another class: another example, no click needed
    assert [m.value for m in at.markdown if "true class" in m.value][0].count("true class **Bag**") == 1


def test_predict_runs_only_the_open_tab_but_keeps_drawings_and_uploads(app):
    """Issue 25 (first paint): a visit drew every tab, so it paid for the camera (and its
    permission prompt), an example's prediction and the photo sets before the title showed.
    Now those run when their tab opens; Draw and Upload are always drawn, so what the visitor
    drew or uploaded outlives a look at another tab."""
    at = app("predict")
    assert [t.label for t in at.tabs][:5] == ["Draw", "Upload", "Camera", "Test-set examples", "Photo sets"]
    assert not at.get("camera_input") and not [m for m in at.markdown if "true class" in m.value]
    assert "example_class" not in [b.key for b in at.selectbox] and "photoset_choice" not in [b.key for b in at.selectbox]
    assert at.get("file_uploader") and at.slider(key="brush")  # Upload's drop zone and Draw's canvas controls
    open_tab(at, "Test-set examples").selectbox(key="example_class").set_value("Bag").run()
    shown = [m.value for m in at.markdown if "true class" in m.value]
    assert len(shown) == 1 and "true class **Bag**" in shown[0]
    open_tab(at, "Camera")
    assert at.get("camera_input") and not [m for m in at.markdown if "true class" in m.value]
    open_tab(at, "Test-set examples")  # back: the same example, its class in the menu
    assert at.selectbox(key="example_class").value == "Bag" and [m.value for m in at.markdown if "true class" in m.value] == shown


def test_predict_every_model_and_examples(app):
    at = open_tab(app("predict"), "Test-set examples")
    at.toggle(key="compare_all").set_value(True).run()
    at.selectbox(key="example_class").set_value("Sneaker").run()
    at.button(key="random_example").click().run()
    assert not at.exception
    verdicts = [m.value for m in at.markdown if "true class" in m.value]
    assert len(verdicts) == 1 and "of 3 models" in verdicts[0]  # the input and its answer shown once
    answers = at.table[0].value  # then a row per model
    assert [name.replace("\\", "") for name in answers.index] == ["resnet_fm_best", "resnet_fm_photos", "cnn_c_report"]  # cells are Markdown-escaped
    assert answers.columns.tolist() == ["Test acc.", "Top class"]
    assert answers["Test acc."].tolist() == ["93.8%", "93.6%", "90.6%"]
    top_classes = [cell.rsplit(" ", 1)[0].replace("\u2011", "-") for cell in answers["Top class"]]
    assert set(top_classes) <= set(CLASSES) and all(cell.endswith("%") for cell in answers["Top class"])


# ---- Train: the form tells the truth, survives a refresh, shares as a link -----------------

def open_train(query: dict | None = None) -> AppTest:
    """The Train page on its own (as a link or a refresh opens it), with `query` in the URL."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/train.py")
    at.query_params = dict(query or {})
    at.run()
    assert not at.exception, at.exception
    return at


def will_train(at) -> str:
    """The summary line as the browser shows it (Markdown escapes removed)."""
    line = next(c.value for c in at.caption if c.value.startswith("**Will train:**"))
    return re.sub(r"\\(.)", r"\1", line)


def test_train_shows_the_exact_config_above_start(app):
    at = app("train")
    assert "cnn_c" in will_train(at) and "batch 32" in will_train(at) and "2 epochs" in will_train(at)
    at.number_input(key="f_batch_size").set_value(1024).run()
    at.number_input(key="f_epochs").set_value(1).run()
    at.selectbox(key="f_schedule").set_value("cosine").run()
    line = will_train(at)
    assert "batch 1024" in line and "1 epoch " in line + " " and "lr schedule cosine" in line
    at.number_input(key="f_batch_size").set_value(0).run()
    assert not [c for c in at.caption if c.value.startswith("**Will train:**")]  # nothing to summarise
    assert any("Nothing can start" in c.value for c in at.caption)


def test_preset_reads_custom_once_edited_and_choosing_it_again_reapplies_it(app):
    at = app("train")
    fast_lr = RECIPES["fast"]["lr"]
    at.selectbox(key="preset").set_value("fast").run()
    assert at.number_input(key="f_lr").value == pytest.approx(fast_lr)
    at.number_input(key="f_lr").set_value(2 * fast_lr).run()
    preset = at.selectbox(key="preset")
    assert preset.value == "custom" and preset.options[0] == "custom (from fast)"
    at.selectbox(key="preset").set_value("fast").run()  # the same preset again
    assert at.number_input(key="f_lr").value == pytest.approx(fast_lr)
    assert at.selectbox(key="preset").value == "fast"
    at.text_input(key="f_name").set_value("mine").run()  # naming the run keeps the recipe
    assert at.selectbox(key="preset").value == "fast"


def test_the_form_is_in_the_link_and_survives_a_refresh(app):
    at = app("train")
    at.selectbox(key="f_model").set_value("cnn_a").run()
    at.number_input(key="f_batch_size").set_value(512).run()
    at.checkbox(key="f_augment").check().run()
    assert at.query_params == {"model": "cnn_a", "batch_size": "512", "augment": "true"}  # only what differs
    refreshed = open_train(at.query_params)  # a refresh, or the link opened by someone else
    assert refreshed.selectbox(key="f_model").value == "cnn_a"
    assert refreshed.number_input(key="f_batch_size").value == 512
    assert refreshed.checkbox(key="f_augment").value is True
    assert refreshed.number_input(key="f_epochs").value == 2
    assert will_train(refreshed) == will_train(at)


def test_bad_link_values_show_on_their_fields_and_never_crash(app):
    at = open_train({"batch_size": "0", "lr": "abc", "model": "nope", "augment": "maybe", "epochs": "3", "other": "x"})
    assert at.number_input(key="f_epochs").value == 3  # the good values are used
    assert any("0 is out of range; use 1 to 8192" in e.value for e in at.error)  # parsed, out of range: marked
    assert at.button(key="start").disabled
    notes = " ".join(c.value for c in at.caption)
    assert "not from the link" in notes and "abc" in notes and "nope" in notes and "maybe" in notes
    assert at.number_input(key="f_lr").value == pytest.approx(0.01) and at.selectbox(key="f_model").value == "cnn_c"
    at.number_input(key="f_batch_size").set_value(64).run()
    assert not at.button(key="start").disabled  # the defaults shown are what would run


# ---- Train: the run list, names, delete and the trash -----------------------------------------

@pytest.fixture
def store(tmp_path):
    from fmnist_core.store.run_store import RunStore

    return RunStore(tmp_path / "runs", clock=StepClock())  # ids a second apart, newest made last


def test_a_new_run_from_another_visitor_does_not_move_this_sessions_selection(app, store):

    older = stored_run(store, "older")
    newer = stored_run(store, "newer")
    at = app("train")
    assert at.selectbox(key="run_picker").value == newer
    at.selectbox(key="run_picker").set_value(older).run()
    stored_run(store, "another visitor's")  # newest of all: first in the list
    at.run()
    assert at.selectbox(key="run_picker").value == older
    assert "older" in at.get("html")[0].proto.body  # the heading: the run this session chose


def test_run_names_are_text_and_long_ones_are_cut(app, store):

    name = "![t](http://127.0.0.1:9/track.png) **bold** " + "x" * 60
    stored_run(store, name)
    at = app("train")
    heading = at.get("html")[0].proto.body
    assert "<img" not in heading and "<strong>" not in heading and "![t](http://127.0.0.1:9/track.png) **bold**" in heading
    assert "…</h3>" in heading and len(heading.split(">")[1].split("<")[0]) <= 60
    at.text_input(key="f_name").set_value("n" * 250).run()
    assert any("is 250 characters long; use at most 100 characters" in e.value for e in at.error)
    assert at.button(key="start").disabled


def test_delete_asks_then_moves_to_the_trash_with_undo_restore_and_empty(app, store):

    run_id = stored_run(store, "doomed")
    at = app("train")
    at.button(key="delete").click().run()
    assert store.ids() == [run_id]  # asked first, nothing deleted yet
    at.button(key="confirm_delete_no").click().run()
    assert store.ids() == [run_id] and not at.button(key="delete").disabled
    at.button(key="delete").click().run()
    at.button(key="confirm_delete_yes").click().run()
    assert store.ids() == [] and [r.name for r in store.trashed()] == ["doomed"]
    assert any("in the trash" in s.value for s in at.success)
    at.button(key="undo_delete_button").click().run()
    assert store.ids() == [run_id] and store.trashed() == []
    assert at.selectbox(key="run_picker").value == run_id
    at.button(key="delete").click().run()
    at.button(key="confirm_delete_yes").click().run()
    at.button(key=f"restore-{run_id}").click().run()  # from the Trash box
    assert store.ids() == [run_id]
    at.button(key="delete").click().run()
    at.button(key="confirm_delete_yes").click().run()
    assert at.button(key="empty_trash").disabled  # only once the box is ticked
    at.checkbox(key="empty_trash_sure").check().run()
    at.button(key="empty_trash").click().run()
    assert store.ids() == [] and store.trashed() == [] and not at.exception


def test_runs_table_hides_cancelled_runs_unless_asked_and_uses_human_columns(app, store):

    stored_run(store, "trained", epochs_done=2, epochs=2)
    stored_run(store, "cancelled in the queue", epochs_done=0, status="cancelled")
    at = app("train")
    assert frame_with(at, "epochs_done")["name"].tolist() == ["trained"]
    at.toggle(key="show_cancelled").set_value(True).run()
    assert sorted(frame_with(at, "epochs_done")["name"]) == ["cancelled in the queue", "trained"]
    table = next(f for f in at.dataframe if "epochs_done" in f.value.columns).proto
    labels = json.loads(table.columns)
    assert labels["lr"]["label"] == "Learning rate" and labels["batch_size"]["label"] == "Batch size"
    assert labels["best_test_accuracy"]["label"] == "Best test accuracy (%)" and not labels["best_test_accuracy"].get("hidden")
    assert labels["params"]["hidden"] and table.placeholder == "–"  # a dash, not "None"


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
    assert len(upload_tab(at).get("image")) == 9  # each file: its 8-bit preview, the 28x28 input and its heatmap (Explain)


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


def test_a_links_own_settings_win_over_its_preset():
    """/train?preset=fast&epochs=4&name=mine: the fast recipe, with 4 epochs and the name mine (issue 23)."""
    at = open_train({"preset": "fast", "epochs": "4", "name": "mine", "lr": "banana"})
    assert at.number_input(key="f_epochs").value == 4 and at.text_input(key="f_name").value == "mine"
    assert at.selectbox(key="f_model").value == RECIPES["fast"]["model"] and at.number_input(key="f_lr").value == RECIPES["fast"]["lr"]
    assert any("not from the link" in c.value for c in at.caption)  # a value it cannot honour is still marked
    assert at.query_params["epochs"] == "4" and at.query_params["name"] == "mine" and "preset" not in at.query_params


def test_the_form_refuses_what_it_would_have_rounded():
    """Epochs 2.5 or 1e9 were cut to 2 or 1 by the browser's int field, and Start ran that; an lr of
    1e-9 showed as 0.00000 (issue 23). Now the field keeps the number and the config's check marks it."""
    at = open_train()
    epochs = at.number_input(key="f_epochs")
    assert epochs.proto.data_type == epochs.proto.FLOAT and epochs.proto.format == "%g"  # the browser keeps 2.5 and 1e9
    for typed, words in ((2.5, "Epochs: 2.5 is not a whole number"), (1e9, "Epochs: 1000000000 is out of range; use 1 to 200")):
        at.number_input(key="f_epochs").set_value(typed).run()
        assert any(words in e.value for e in at.error), [e.value for e in at.error]
        assert at.button(key="start").disabled and not any(c.value.startswith("**Will train:**") for c in at.caption)
    at.number_input(key="f_epochs").set_value(3.0).run()
    assert not at.button(key="start").disabled and "3 epochs" in will_train(at)
    at.number_input(key="f_lr").set_value(1e-9).run()
    assert at.number_input(key="f_lr").proto.format == "%g" and "lr 1e-09" in will_train(at)


def test_predict_camera_photo_shows_the_item_found_and_what_is_unsure(app, real_data):
    """A phone photo of two items on a textured, unevenly lit surface: the larger is
    classified, the found item is shown, and "several items" is a warning (inert text)."""
    from fmnist_core.images.photo_synth import synth_scene

    at = open_tab(app("predict"), "Camera")
    scene = synth_scene([real_data.train_images[1].numpy(), real_data.train_images[3].numpy()], seed=0)
    at.camera_input(key="camera").set_value(("shot.jpg", scene.jpeg, "image/jpeg")).run()
    assert not at.exception
    captions = [image.captions for image in at.get("image")]
    assert ["camera, the item found tinted red"] in captions and ["what the model sees (28x28)"] in captions
    assert [w.value for w in at.warning if w.value.startswith("Several items")], [w.value for w in at.warning]

    empty = synth_scene([], seed=0, empty=True)
    at.camera_input(key="camera").set_value(("shot.jpg", empty.jpeg, "image/jpeg")).run()
    assert not at.exception
    assert any("No clear item" in w.value for w in at.warning)
    assert any("no item stands out" in i.value for i in at.info)
