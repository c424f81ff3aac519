"""The leaderboard: the pure ranking (fmnist_core.store.leaderboard) and the Compare page's view of it
(AppTest on fixture run stores with several owners and names, local and shared mode)."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.recipes import CUSTOM, recipe_config
from fmnist_core.store.leaderboard import filter_choices, leaderboard, owner_label, recipe_of
from fmnist_core.store.run_store import RunStore
from tests.helpers.pages import as_displayed, frame_with, open_view, run_app
from tests.helpers.paths import APP, ROOT
from tests.helpers.runs import add_run

ANN, BOB, CARL = "anon:" + "a" * 32, "anon:" + "b" * 32, "carl@example.org"


@pytest.fixture
def class_store(tmp_path) -> RunStore:
    """Three visitors' runs, and the runs that must not rank."""
    store = RunStore(tmp_path / "runs")
    add_run(store, "ann first", ANN, 90.0, "2026-12-01T10:00:00+00:00")
    add_run(store, "ann best", ANN, 91.5, "2026-12-01T10:05:00+00:00")
    add_run(store, "ann mlp", ANN, 85.25, "2026-12-01T10:06:00+00:00", config=TrainConfig(model="mlp4", epochs=1))
    add_run(store, "bob fast", BOB, 92.0, "2026-12-01T10:10:00+00:00", config=recipe_config("fast", epochs=1))
    add_run(store, "bob mlp", BOB, 84.0, "2026-12-01T10:11:00+00:00", config=TrainConfig(model="mlp4", epochs=1))
    add_run(store, "carl", CARL, 89.0, "2026-12-01T10:12:00+00:00")
    for status in ("stopped", "failed", "diverged"):  # higher than everyone's, and not finished
        add_run(store, f"carl {status}", CARL, 99.0, "2026-12-01T10:13:00+00:00", status=status)
    add_run(store, "carl's trial", CARL, 98.0, "2026-12-01T10:14:00+00:00", sweep="sweep-1")  # picked on the test set
    return store


def test_best_finished_run_per_visitor_ranked_by_test_accuracy(class_store):
    rows = leaderboard(class_store.list(), by_owner=True, viewer=ANN)
    assert [(r["rank"], r["name"], r["test_accuracy"]) for r in rows] == [(1, "bob fast", 92.0), (2, "ann best", 91.5), (3, "carl", 89.0)]
    assert [r["yours"] for r in rows] == [False, True, False]
    assert rows[1]["owner"] == "you" and rows[2]["owner"].startswith("signed-in visitor ")  # never their e-mail
    assert "carl" not in rows[2]["owner"]
    assert rows[0]["owner"].startswith("anonymous visitor ") and "b" * 8 not in rows[0]["owner"]  # never the id itself
    assert rows[0]["recipe"] == "fast" and rows[1]["recipe"] == CUSTOM
    assert rows[0]["params"] == 12345 and rows[0]["seconds"] == 12.0 and rows[0]["model"] == "fast_cnn_v2"
    # Another viewer: the same order, their own row marked
    assert [r["yours"] for r in leaderboard(class_store.list(), by_owner=True, viewer=BOB)] == [True, False, False]


def test_local_mode_ranks_the_best_run_of_each_name(tmp_path):
    store = RunStore(tmp_path / "runs")
    add_run(store, "same name", "local", 88.0, "2026-12-01T10:00:00+00:00")
    add_run(store, "same name", "local", 90.0, "2026-12-01T10:01:00+00:00")
    add_run(store, "other", "local", 89.0, "2026-12-01T10:02:00+00:00")
    rows = leaderboard(store.list(), by_owner=False, viewer="local")
    assert [(r["name"], r["test_accuracy"]) for r in rows] == [("same name", 90.0), ("other", 89.0)]


def test_a_tie_to_the_shown_decimals_goes_to_the_earlier_run(tmp_path):
    store = RunStore(tmp_path / "runs")
    add_run(store, "later", BOB, 91.234, "2026-12-01T11:00:00+00:00")  # created (and listed) first, started later
    add_run(store, "earlier", ANN, 91.231, "2026-12-01T10:00:00+00:00")
    add_run(store, "just above", CARL, 91.236, "2026-12-01T12:00:00+00:00")  # 91.24: not a tie
    assert [r["name"] for r in leaderboard(store.list(), by_owner=True)] == ["just above", "earlier", "later"]


def test_filters_rank_each_visitors_best_run_of_that_model_or_recipe(class_store):
    records = class_store.list()
    assert filter_choices(records) == (["cnn_a", "fast_cnn_v2", "mlp4"], [CUSTOM, "fast"])
    mlp = leaderboard(records, by_owner=True, viewer=ANN, models=["mlp4"])
    assert [(r["name"], r["test_accuracy"]) for r in mlp] == [("ann mlp", 85.25), ("bob mlp", 84.0)]
    assert [r["name"] for r in leaderboard(records, by_owner=True, recipes=["fast"])] == ["bob fast"]
    assert leaderboard(records, by_owner=True, models=["mlp4"], recipes=["fast"]) == []


def test_recipe_is_the_recipes_settings_whatever_the_epochs_and_seed():
    assert recipe_of(recipe_config("fast", epochs=4, seed=3, threads=1, name="mine").to_dict()) == "fast"
    assert recipe_of(recipe_config("report_cnn_c").to_dict()) == "report_cnn_c"
    assert recipe_of(recipe_config("fast", lr=0.3).to_dict()) == CUSTOM
    assert recipe_of(TrainConfig().to_dict()) == CUSTOM


def test_owner_labels():
    assert owner_label("local", "anon:x") == "the command line"
    assert owner_label("", "anon:x") == "nobody (a run from before owners)"
    assert owner_label(ANN, ANN) == "you"
    assert owner_label(ANN, BOB) == owner_label(ANN, CARL) != owner_label(BOB, CARL)  # one tag per visitor, for everyone


# ---- the Compare page ----------------------------------------------------------------------------


@pytest.fixture
def compare_page(monkeypatch):
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()

    def open_page(root, mode: str = "local", visitor: str | None = None) -> AppTest:
        monkeypatch.setenv("FMNIST_RUNS_DIR", str(root))
        monkeypatch.setenv("FMNIST_STUDIO_MODE", mode)
        st.cache_resource.clear()  # the policy is read once per process: as a restarted server
        at = AppTest.from_file(APP, default_timeout=120)
        if visitor:
            at.session_state["visitor_id"] = visitor
        return open_view(run_app(at, "compare"), "Leaderboard")

    yield open_page
    st.cache_resource.clear()


def board(at):
    for frame in at.dataframe:
        if "rank" in frame.value.columns:
            return frame
    return None


def test_compare_shows_the_leaderboard_in_shared_mode(class_store, compare_page):
    at = compare_page(class_store.root, "shared", visitor=BOB)
    shown = as_displayed(board(at))
    assert shown["Rank"] == ["1", "2", "3"] and shown["Name"] == ["bob fast", "ann best", "carl"]
    assert shown["Who"][0] == "you" and shown["Who"][2].startswith("signed-in visitor ") and shown["Yours"] == ["True", "False", "False"]
    assert shown["Test accuracy (%)"] == ["92.00", "91.50", "89.00"] and shown["Recipe"] == ["fast", CUSTOM, CUSTOM]
    assert shown["Parameters"] == ["12345"] * 3 and shown["Time (s)"] == ["12"] * 3
    run_ids = {r.name: r.id for r in class_store.list()}
    assert board(at).value["link"].tolist() == [f"compare?runs={run_ids[n]}" for n in shown["Name"]]
    assert "id" not in board(at).proto.column_order  # the id: for the link, not shown
    shipped = [c.value.replace("\\", "") for c in at.caption if "shipped models" in c.value]  # escaped Markdown: as read
    assert len(shipped) == 1 and "Not ranked, for reference: the shipped models, resnet_fm_best (resnet_fm) 93.81%" in shipped[0]
    # Filters: each visitor's best mlp4 run
    at.multiselect(key="board_model").set_value(["mlp4"]).run()
    assert as_displayed(board(at))["Name"] == ["ann mlp", "bob mlp"]
    at.multiselect(key="board_recipe").set_value(["fast"]).run()
    assert board(at) is None and any("No finished run matches these filters." in c.value for c in at.caption)
    # Ann sees the same ranking, her own entry marked
    ann = compare_page(class_store.root, "shared", visitor=ANN)
    assert as_displayed(board(ann))["Name"] == ["bob fast", "ann best", "carl"]
    assert as_displayed(board(ann))["Yours"] == ["False", "True", "False"]


def test_compare_leaderboard_in_local_mode_is_per_name_without_owners(class_store, compare_page):
    at = compare_page(class_store.root)
    shown = as_displayed(board(at))
    assert shown["Name"] == ["bob fast", "ann best", "ann first", "carl", "ann mlp", "bob mlp"]
    assert "Who" not in shown and "Yours" not in shown
    assert frame_with(at, "images_per_s") is not None  # the runs table is still there


def test_compare_leaderboard_shows_names_literally(tmp_path, compare_page):
    store = RunStore(tmp_path / "runs")
    hostile = ["**bold** [x](http://e.org)", "<img src=x onerror=alert(1)>", "# heading"]
    for i, name in enumerate(hostile):
        add_run(store, name, "local", 90.0 - i, f"2026-12-01T10:0{i}:00+00:00")
    at = compare_page(store.root)
    assert as_displayed(board(at))["Name"] == hostile  # cells of a grid: text, never Markdown or HTML
