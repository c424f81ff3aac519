"""Compare page (AppTest on a fixture run store) and the metrics/table code behind it."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.config import TrainConfig
from fmnist_core.metrics import Analysis, config_differences, confusion_matrix, describe_differences, per_class_accuracy
from fmnist_core.reproduce import TABLE1, TABLE1_COLUMNS, planned_runs, results_from_runs, table1_rows, to_markdown
from fmnist_core.run_manager import RunManager
from fmnist_core.run_store import RunStore
from tests.conftest import ROOT, frame_with


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
    assert describe_differences(diffs) == "only lr differs: 0.01 vs 0.1"
    c = TrainConfig(lr=0.1, batch_size=64).to_dict()
    assert describe_differences(config_differences({"a": a, "c": c})).startswith("2 settings differ: batch_size: 32 vs 64; lr: 0.01 vs 0.1")
    assert describe_differences({}) == "the configs are identical"


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


@pytest.fixture
def store_with_two_runs(tmp_path, tiny_data, monkeypatch):
    root = tmp_path / "runs"
    manager = RunManager(RunStore(root), data_loader=lambda: tiny_data)
    base = dict(model="cnn_a", optimizer="sgd", batch_size=32, epochs=2, threads=1)
    manager.submit(TrainConfig(**base, lr=0.01, name="report_cnn_c"))
    manager.submit(TrainConfig(**base, lr=0.1, name="faster"))
    assert manager.wait_idle(120)
    monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    yield manager
    st.cache_resource.clear()


def open_compare() -> AppTest:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_compare_page_with_a_fixture_store(store_with_two_runs):
    at = open_compare()
    overview = frame_with(at, "images_per_s")
    assert sorted(overview["name"]) == ["faster", "report_cnn_c"]
    assert any("only lr differs: 0.1 vs 0.01" in i.value or "only lr differs: 0.01 vs 0.1" in i.value for i in at.info)
    # filter
    at.text_input(key="filter_text").set_value("fast").run()
    assert frame_with(at, "images_per_s")["name"].tolist() == ["faster"]
    at.text_input(key="filter_text").set_value("").run()
    # confusion matrix and mistakes for the chosen run
    assert at.selectbox(key="mistake_true").value in at.selectbox(key="mistake_true").options
    assert any("test images of" in c.value for c in at.caption)
    # Table 1 picks up the run named after the report's recipe
    table1 = frame_with(at, "Test acc (report)")
    assert table1["Test acc (report)"].iloc[-1] == 90.34 and table1["Test acc (ours)"].iloc[-1] > 0
    # CSV downloads are offered
    assert len(at.get("download_button")) == 3  # the table, the selected runs' histories, the model card


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
