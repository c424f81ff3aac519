"""Compare page (AppTest on a fixture run store) and the metrics/table code behind it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.analysis.metrics import Analysis, config_differences, confusion_matrix, describe_differences, per_class_accuracy
from fmnist_core.base.table1 import read_table1_csv
from fmnist_core.commands.reproduce import TABLE1, TABLE1_COLUMNS, planned_runs, results_from_runs, table1_rows, to_markdown
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.store.catalog import EntryKey
from fmnist_core.store.run_store import RunStore
from tests.helpers.pages import as_displayed, frame_with, open_compare, open_view, run_app
from tests.helpers.paths import APP, ROOT


def test_confusion_matrix_by_hand():
    labels = [0, 0, 1, 1, 1, 2]
    preds = [0, 1, 1, 1, 2, 2]
    m = confusion_matrix(labels, preds, num_classes=3)
    assert m == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert per_class_accuracy(m) == pytest.approx([50.0, 200 / 3, 100.0])


def test_mistakes_most_confident_first():
    probs = np.array([[0.1, 0.9], [0.4, 0.6], [0.2, 0.8], [0.9, 0.1]])
    labels = np.array([0, 0, 0, 1])
    analysis = Analysis(labels, probs, confusion_matrix(labels, probs.argmax(1), 2))
    assert analysis.mistakes(0, 1) == [0, 2, 1]
    assert analysis.mistakes(1, 0) == [3]
    assert analysis.accuracy == pytest.approx(0.0)


def test_config_differences_sentence():
    a, b = TrainConfig().to_dict(), TrainConfig(lr=0.1).to_dict()
    diffs = config_differences({"a": a, "b": b})
    assert list(diffs) == ["lr"]
    assert describe_differences(diffs) == "only learning rate differs: 0.01 (a) vs 0.1 (b)"
    c = TrainConfig(lr=0.1, batch_size=64).to_dict()
    assert describe_differences(config_differences({"a": a, "c": c})) == (
        "2 settings differ (a vs c): learning rate: 0.01 vs 0.1; batch size: 32 images vs 64 images")  # runs named once
    three = config_differences({"a": a, "b": b, "c": c})
    assert describe_differences(three) == "2 settings differ: learning rate: 0.01 (a) vs 0.1 (b, c); batch size: 32 images (a, b) vs 64 images (c)"
    assert describe_differences({}) == "the configs are the same in effect"


def test_config_differences_list_only_settings_that_differ_in_effect_in_words():
    """Issue 23: the default comparison listed settings the runs do not use, and missing
    settings as None ("None vs True vs None")."""
    def same(a: dict, b: dict) -> bool:
        return config_differences({"a": a, "b": b}) == {}

    base = TrainConfig(model="cnn_a").to_dict()  # cnn_a has no dropout and no width
    assert same(base, {**base, "dropout": 0.5, "width": 64})
    assert same({**base, "optimizer": "adam", "momentum": 0.9}, {**base, "optimizer": "adam", "momentum": 0.0})
    assert same({**base, "momentum": 0.0, "nesterov": True}, {**base, "momentum": 0.0})  # Nesterov needs momentum
    assert same({**base, "threads": 3, "device": "cpu", "name": "x"}, base)  # where and how fast, not what
    mlp4 = TrainConfig(model="mlp4").to_dict()
    assert same(mlp4, {**mlp4, "dropout": 0.2})  # None is the model's own 0.2
    old = {k: v for k, v in base.items() if k not in ("tta", "precision", "channels_last")}  # saved before they existed
    assert same(old, base)
    # what does differ, in words, the runs named
    assert describe_differences(config_differences({"a": old, "b": {**base, "tta": True}, "c": base})) == \
        "only flip TTA differs: off (a, c) vs on (b)"
    assert describe_differences(config_differences({"sgd": base, "adam": {**base, "optimizer": "adam"}})) == \
        "only optimizer differs: sgd (sgd) vs adam (adam)"  # momentum 0.9 is sgd's alone: not a difference
    assert describe_differences(config_differences({"a": {**base, "patch": 14}, "b": base})) == "only patching differs: 14 px (a) vs off (b)"


def test_table1_rows_put_ours_beside_the_report():
    rows = table1_rows({"report_cnn_c": {"train_accuracy": 92.1, "test_accuracy": 90.6, "train_loss_sum": 393.0, "seconds": 270.0, "epochs_done": 20, "status": "finished"}})
    cnn_c = rows[-1]
    assert cnn_c["report_test_accuracy"] == 90.34 and cnn_c["test_accuracy"] == 90.6 and cnn_c["loss"] == 393.0
    assert rows[0]["test_accuracy"] is None and len(rows) == len(TABLE1)
    markdown = to_markdown(rows, TABLE1_COLUMNS)
    assert "| CNN C | No Patching | 93.38 | 92.10 | 90.34 | 90.60 | 400.00 | 393.00 | 20 | 270 | finished |" in markdown


def test_planned_runs_use_the_report_recipe():
    plan = dict(planned_runs("table1", 20, None))
    assert plan["report_cnn_c"].batch_size == 32 and plan["report_cnn_c"].init == "custom" and plan["report_cnn_c"].lr == 0.01
    assert plan["report_mlp4"].lr == 0.1 and plan["report_cnn_b"].softmax_output and not plan["report_cnn_b_fixed"].softmax_output
    assert len(planned_runs("init", 1, None)) == 7 and len(planned_runs("optimizers", 1, None)) == 3
    with pytest.raises(ValueError, match="unknown row"):
        planned_runs("table1", 1, ["nope"])


def test_compare_page_with_a_fixture_store(store_with_two_runs):
    at = open_compare()
    overview = frame_with(at, "images_per_s")
    runs = overview[overview["source"] == "trained here"]
    assert sorted(runs["name"]) == ["faster", "report_cnn_c"]
    at.multiselect(key="compare_runs").set_value([EntryKey.of("run", rid) for rid in store_with_two_runs.store.ids()]).run()
    shown = [i.value.replace("\\", "") for i in at.info]  # the line is Markdown-escaped (issue 21): compare what a reader sees
    assert any("only learning rate differs: 0.01 (report_cnn_c) vs 0.1 (faster)" in v
               or "only learning rate differs: 0.1 (faster) vs 0.01 (report_cnn_c)" in v for v in shown), shown
    # filter
    at.text_input(key="filter_text").set_value("fast").run()
    assert frame_with(at, "images_per_s")["name"].tolist() == ["faster"]
    at.text_input(key="filter_text").set_value("").run()
    assert [b.label for b in at.get("download_button")] == ["Download this table (CSV)", "Download the selected runs' histories (CSV)"]
    # confusion matrix and mistakes for the chosen run
    open_view(at, "What a model gets wrong")
    assert "Model card (Markdown)" in [b.label for b in at.get("download_button")]
    assert at.selectbox(key="mistake_true").value in at.selectbox(key="mistake_true").options
    assert any("test images of" in c.value for c in at.caption)
    # Table 1 picks up the run named after the report's recipe
    table1 = frame_with(open_view(at, "Table 1"), "report_test_accuracy")
    ours = next(r for r in store_with_two_runs.list_runs() if r.name == "report_cnn_c")
    assert table1["report_test_accuracy"].iloc[-1] == 90.34
    assert table1["test_accuracy"].iloc[-1] == pytest.approx(ours.history[-1]["test_accuracy"], abs=0.01)  # this run's last epoch
    assert [b.label for b in at.get("download_button")] == ["Download this table (CSV)", "Download Table 1 (CSV)"]


def test_compare_runs_only_the_open_view_and_the_link_opens_one(fresh_clone):
    """Issue 25 (first paint): Compare drew its four sections on every visit, so its title waited
    for every chart, picture and table (1.75x a one-line app's first content in Chromium). Now
    each is a tab that runs when opened, and the address bar holds it: Home links to Table 1."""
    at = open_compare()
    assert [t.label for t in at.tabs] == ["Curves", "Leaderboard", "What a model gets wrong", "Table 1"]
    assert at.multiselect(key="compare_runs").value  # Curves, open at first
    keys = [w.key for w in (*at.selectbox, *at.multiselect)]
    assert "focus_run" not in keys and "board_model" not in keys
    assert not any("report_test_accuracy" in f.value.columns for f in at.dataframe) and not at.get("image")
    open_view(at, "Table 1")
    assert any("report_test_accuracy" in f.value.columns for f in at.dataframe) and "compare_runs" not in [w.key for w in at.multiselect]
    home = run_app(AppTest.from_file(APP, default_timeout=120))  # the address opens a view: tests/e2e/test_compare_browser.py
    link = next(link.proto for link in home.get("page_link") if link.proto.label == "See the report reproduced")
    assert link.query_string == "view=Table+1"


def test_compare_page_survives_damaged_runs(store_with_two_runs):
    run_id = store_with_two_runs.store.ids()[0]
    (store_with_two_runs.store.root / run_id / "config.json").write_text("{broken")
    (store_with_two_runs.store.root / run_id / "model.safetensors").write_bytes(b"junk")
    at = open_compare()
    assert any("damaged" in w.value for w in at.warning)


def test_results_from_runs_takes_the_newest_finished(store_with_two_runs):
    found = results_from_runs(store_with_two_runs.list_runs())
    assert sorted(found) == ["faster", "report_cnn_c"]
    assert found["report_cnn_c"]["status"] == "finished"


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The app as a fresh clone sees it: no run store yet, the shipped models and results/."""
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def test_compare_is_full_on_a_fresh_clone(fresh_clone):
    at = open_compare()
    assert not any("No runs yet" in i.value for i in at.info)
    overview = frame_with(at, "images_per_s")
    assert {"resnet_fm_best", "resnet_fm_photos", "cnn_c_report"} <= set(overview["name"])
    shown = as_displayed(next(f for f in at.dataframe if "images_per_s" in f.value.columns))
    rates = dict(zip(shown["Name"], shown["Learning rate"]))  # the fine-tuned model's lr is 0.1 * 0.1 in binary
    assert rates["resnet_fm_photos"] == "0.01" and rates["resnet_fm_best"] == "0.1" and max(map(len, rates.values())) <= 6
    reproduced = overview[overview["source"] == "results/table1.csv"]
    assert "Table 1 · MLP Custom" in set(reproduced["name"]) and "Table 1 · MLP4, patching" in set(reproduced["name"])
    assert reproduced.set_index("name").loc["Table 1 · CNN A", "test_accuracy"] == pytest.approx(87.41, abs=0.01)
    # CNN C's row is the shipped cnn_c_report (same recipe): listed once, not twice
    assert "Table 1 · CNN C" not in set(overview["name"])
    # the best finished models are overlaid, and the best one is opened
    assert at.multiselect(key="compare_runs").value == ["shipped:resnet_fm_best", "shipped:resnet_fm_photos", "shipped:cnn_c_report"]
    open_view(at, "What a model gets wrong")
    assert at.selectbox(key="focus_run").value == "shipped:resnet_fm_best"
    assert any("Per-class accuracy (overall 93.81%)" in chart.proto.spec for chart in at.get("vega_lite_chart"))
    assert any("test images of **Shirt** predicted as" in c.value for c in at.caption)
    # Table 1: our columns come from results/table1.csv
    table1 = frame_with(open_view(at, "Table 1"), "report_test_accuracy").set_index("model")
    assert table1.loc["CNN C", "test_accuracy"] == pytest.approx(90.63, abs=0.01)
    assert table1.loc["MLP Custom", "loss"] == pytest.approx(349.65, abs=0.01)
    assert table1["test_accuracy"].notna().sum() == 7  # MLP4 at lr 0.1 diverged: no figure


def test_a_figures_only_row_opens_with_how_to_retrain_it(fresh_clone):
    at = open_compare("What a model gets wrong")
    at.selectbox(key="focus_run").set_value("table1:report_mlp_custom").run()
    assert not at.exception
    assert any("reproduce --only report_mlp_custom" in i.value for i in at.info)


def test_mistakes_never_list_correct_answers(fresh_clone):
    at = open_compare("What a model gets wrong")
    for true_class in ("Trouser", "Shirt", "Bag"):
        at.selectbox(key="mistake_true").set_value(true_class).run()
        t = at.selectbox(key="mistake_true").options.index(true_class)
        picker = at.selectbox(key=f"mistake_pred_{t}")
        assert len(picker.options) == 9 and not any(option.startswith(true_class + " (") for option in picker.options)
        assert all("predicted as **" + true_class + "**" not in c.value for c in at.caption)


def test_analysis_mistakes_and_confusions_exclude_the_true_class():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 1, 1])
    analysis = Analysis(labels, probs, confusion_matrix(labels, probs.argmax(1), 3))
    assert analysis.mistakes(1, 1) == [] and analysis.mistakes(0, 0) == []
    assert analysis.mistakes(1, 2) == [3]
    assert analysis.confusions(1) == [(2, 1), (0, 0)]
    assert analysis.worst_confusion() == (1, 2)


def test_read_table1_csv(tmp_path):
    found = read_table1_csv(ROOT / "results" / "table1.csv")
    assert set(found) == {row.recipe for row in TABLE1}
    assert found["report_mlp4"]["status"] == "diverged" and found["report_mlp4"]["test_accuracy"] is None
    assert found["report_cnn_c"]["epochs_done"] == 20 and found["report_cnn_c"]["train_loss_sum"] == pytest.approx(393.03, abs=0.01)
    (tmp_path / "table1.csv").write_bytes(b"\xff\xfe not a csv")
    assert read_table1_csv(tmp_path / "table1.csv") == {} and read_table1_csv(tmp_path / "missing.csv") == {}


def test_a_run_without_weights_opens_with_its_status(fresh_clone, tmp_path):
    run_id = RunStore(tmp_path / "runs").create(TrainConfig(model="cnn_a", name="cut short")).name  # no epoch, no weights
    at = open_compare("What a model gets wrong")
    at.selectbox(key="focus_run").set_value(EntryKey.of("run", run_id)).run()
    assert not at.exception
    assert any("No weights saved yet (status: interrupted)" in i.value for i in at.info)


def test_table1_shows_blanks_and_rounds_to_what_each_column_means(fresh_clone):
    """Issue 23: Table 1 showed "None", 91.435 and 1484.1201."""
    table1 = as_displayed(open_compare("Table 1").dataframe[-1])  # the view's one table
    cells = [cell for column in table1.values() for cell in column]
    assert "None" not in cells and "nan" not in cells and "<NA>" not in cells
    rows = dict(zip(table1["Model"], range(len(table1["Model"]))))
    assert "CNN B (as published: double softmax)" in rows  # the full name, as published
    mlp4, mlp4_patching = [i for i, model in enumerate(table1["Model"]) if model == "MLP4"]  # without, with patching
    assert table1["Loss (ours)"][mlp4_patching] == "1484.12"  # the report prints its sums with two decimals
    assert table1["Train (report)"][rows["MLP Custom"]] in ("91.43", "91.44")  # 91.435: two decimals for %
    assert table1["Test (ours)"][rows["CNN C"]] == "90.63"
    assert table1["Time (s)"][rows["CNN C"]] == "259"  # whole seconds (258.66)
    assert table1["Train (ours)"][mlp4] == "–"  # diverged: no figure, a dash
    for label, column in table1.items():
        if "(report)" in label or "(ours)" in label:
            assert all(re.fullmatch(r"\d+\.\d\d|–", cell) for cell in column), (label, column)


def test_a_fine_tuned_runs_start_is_named_not_located():
    """Compare showed the server's absolute path to the checkpoint a run started from."""
    base = TrainConfig(model="cnn_c").to_dict()
    started = {**base, "init_from": "/srv/studio/checkpoints/runs/20261201-a/model.safetensors",
               "extra": {"fine_tuned_from": {"run": "20261201-a", "model": "cnn_c", "sha256": "ab" * 32}}}
    text = describe_differences(config_differences({"fresh": base, "tuned": started}))
    assert "/srv" not in text and "20261201-a (cnn_c, sha256 abababababab)" in text, text
    moved = {**started, "init_from": "/elsewhere/20261201-a/model.safetensors"}  # the same checkpoint, another path
    assert config_differences({"a": started, "b": moved}) == {}


def test_the_mistakes_grid_is_one_batch_kept_beside_the_weights(store_with_two_runs):
    """Issue 23 (24 heatmaps, ~4 s for resnet_fm on one core): the grid's maps come from
    mistake_maps, computed once per checkpoint version into a file beside the weights."""
    from safetensors.torch import load

    from fmnist_core.analysis.mistake_maps import MAPS_NAME

    record = store_with_two_runs.store.list()[0]
    maps = record.weights.with_name(MAPS_NAME)
    assert not maps.exists()
    at = open_compare("What a model gets wrong")
    at.selectbox(key="focus_run").set_value(EntryKey.of("run", record.id)).run()
    assert not at.exception
    true_class = at.selectbox(key="mistake_true").options.index(at.selectbox(key="mistake_true").value)
    predicted = at.selectbox(key=f"mistake_pred_{true_class}").value
    shown = [int(image.proto.imgs[0].caption.split(":")[0][1:]) for image in at.get("image")
             if image.proto.imgs and image.proto.imgs[0].caption.startswith("#")]
    assert shown, "no mistakes shown"
    stored = load(maps.read_bytes())
    assert set(stored["targets"].tolist()) == {predicted} and sorted(stored["indices"].tolist()) == sorted(shown)
