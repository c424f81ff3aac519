"""Charts read right: the Vega-Lite each chart hands the browser, checked field by field."""

from __future__ import annotations

import json

import pytest

from ui.charts import batch_loss_chart, epoch_chart, identical_runs, runs_overlay_chart


def epoch(e: int, **extra) -> dict:
    return {"epoch": e, "train_accuracy": 80.0 + e, "test_accuracy": 79.0 + e, "train_loss": 0.6 / e, "test_loss": 0.7 / e, **extra}


def layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def test_a_one_epoch_run_has_a_whole_number_epoch_axis():
    spec = epoch_chart([epoch(1)], "accuracy").to_dict()
    x = spec["encoding"]["x"]
    assert x["axis"]["format"] == "d" and x["axis"]["values"] == [1]  # "1", not "1.000000" or 0.8, 1.2
    assert x["scale"]["domain"] == [0.5, 1.5]
    live = epoch_chart([epoch(1), epoch(2)], "loss", epochs_planned=20).to_dict()["encoding"]["x"]
    assert live["axis"]["values"] == list(range(1, 21))  # the whole run's epochs while it trains
    long = epoch_chart([epoch(e) for e in range(1, 101)], "loss").to_dict()["encoding"]["x"]
    assert "values" not in long["axis"] and long["axis"]["tickMinStep"] == 1


def test_legend_lists_only_splits_with_data():
    without = epoch_chart([epoch(1), epoch(2)], "accuracy").to_dict()["encoding"]["color"]["scale"]["domain"]
    assert without == ["train", "test"]
    with_val = epoch_chart([epoch(1, val_accuracy=78.0)], "accuracy").to_dict()["encoding"]["color"]["scale"]["domain"]
    assert with_val == ["train", "validation", "test"]


def test_overlay_legend_says_solid_test_and_dashed_train_and_colours_points_by_run():
    spec = runs_overlay_chart({"a": [epoch(1), epoch(2)], "b": [epoch(1)]}, "accuracy").to_dict()
    lines, points, rule = layers(spec)
    dash = lines["encoding"]["strokeDash"]
    assert dash["scale"]["domain"] == ["test (solid)", "train (dashed)"]
    assert dash["scale"]["range"][0] == [1, 0] and dash["scale"]["range"][1] != [1, 0]
    assert dash["legend"]["symbolType"] == "stroke"
    assert points["encoding"]["color"]["field"] == "run"  # not black
    assert lines["encoding"]["color"]["scale"]["domain"] == ["a", "b"]
    test_only = [{"epoch": 1, "test_accuracy": 80.0}]
    assert layers(runs_overlay_chart({"a": test_only}, "accuracy").to_dict())[0]["encoding"]["strokeDash"]["scale"]["domain"] == ["test (solid)"]


def test_identical_runs_are_drawn_apart_and_named():
    same = [epoch(1), epoch(2)]
    histories = {"first": same, "copy": list(same), "other": [epoch(1, test_accuracy=50.0)]}
    assert identical_runs(histories) == [["first", "copy"]]
    spec = runs_overlay_chart(histories, "accuracy").to_dict()
    rows = spec["datasets"][spec["data"]["name"]] if "name" in spec.get("data", {}) else next(iter(spec["datasets"].values()))
    xs = {(r["run"], r["epoch"]): r["x"] for r in rows if r["split"] == "test (solid)"}
    assert xs[("first", 1)] != xs[("copy", 1)]
    assert all(abs(r["x"] - r["epoch"]) < 0.2 for r in rows)  # still read at their epoch
    assert {r["epoch"] for r in rows} == {1, 2}


def test_hover_rule_shows_every_runs_value_at_an_epoch():
    spec = runs_overlay_chart({"run.one": [epoch(1)], "two": [epoch(1)]}, "loss").to_dict()
    rule = layers(spec)[2]
    assert rule["mark"]["type"] == "rule"
    (pivot,) = [t for t in rule["transform"] if "pivot" in t]
    assert pivot["groupby"] == ["epoch"]
    titles = [t.get("title") for t in rule["encoding"]["tooltip"]]
    assert titles[1:] == ["run.one · test", "run.one · train", "two · test", "two · train"]
    (param,) = spec["params"]
    assert param["select"]["nearest"] and param["select"]["on"] == "pointerover"
    json.dumps(spec)  # serialisable as the browser gets it


@pytest.mark.parametrize("make", [
    lambda log: epoch_chart([epoch(1), epoch(2)], "loss", log_scale=log).to_dict()["encoding"]["y"],
    lambda log: layers(runs_overlay_chart({"a": [epoch(1)]}, "loss", log_scale=log).to_dict())[0]["encoding"]["y"],
    lambda log: layers(batch_loss_chart([(1, 2.0), (2, 1.0)], 10, log_scale=log).to_dict())[0]["encoding"]["y"],
])
def test_loss_charts_have_a_log_scale_toggle(make):
    assert make(True)["scale"]["type"] == "log"
    assert make(False)["scale"].get("type") != "log"


def test_batch_loss_chart_spans_the_whole_run_and_smooths_on_request():
    points = [(step, 2.0 / step) for step in range(1, 51)]
    spec = batch_loss_chart(points, total_steps=1876, smoothing=0.6).to_dict()
    raw, smoothed = layers(spec)
    assert raw["encoding"]["x"]["scale"]["domain"] == [0, 1876]  # fixed while the run trains
    assert "smoothed 0.6" in raw["title"]
    rows = next(iter(spec["datasets"].values()))
    assert rows[0]["smoothed"] == pytest.approx(2.0) and rows[-1]["smoothed"] > rows[-1]["loss"]  # lags the falling loss
    plain = batch_loss_chart(points, total_steps=1876, smoothing=0.0).to_dict()
    assert "layer" not in plain and "smoothed" not in plain["title"]


def test_sessions_showing_one_run_share_one_loss_chart_build(monkeypatch):
    """Every open Train page polls its run each second; the per-batch chart is built once per
    LOSS_CHART_SECONDS for all of them, not once per session and poll (issue 11, Load: the
    build was 45 ms of each poll), and a new status (the run ended) builds a fresh one at once."""
    import ui.charts as charts

    builds = []
    real = charts.batch_loss_chart
    monkeypatch.setattr(charts, "batch_loss_chart", lambda *a, **k: builds.append(1) or real(*a, **k))
    charts.shared_batch_loss_spec.clear()
    points = [(i, 1.0 / i) for i in range(1, 200)]
    specs = [charts.shared_batch_loss_spec("run-a", "running", 400, 0.9, False, points[: 100 + i]) for i in range(10)]
    assert len(builds) == 1 and all(spec == specs[0] for spec in specs)  # one spec, so the browsers need not redraw
    ended = charts.shared_batch_loss_spec("run-a", "finished", 400, 0.9, False, points)
    assert len(builds) == 2 and ended != specs[0]
    assert charts.shared_batch_loss_spec("run-a", "finished", 400, 0.0, False, points) != ended  # smoothing is in the key
    assert len(builds) == 3
