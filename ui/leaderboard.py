"""The Compare page's leaderboard: fmnist_core.store.leaderboard's rows as a read-only table, with
its filters, a link to each run's curves and the shipped models beside it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fmnist_core.base import paths
from fmnist_core.store.leaderboard import filter_choices, leaderboard, shipped_rows
from fmnist_core.store.run_store import RunRecord, RunStore
from ui.sweeps import compare_link
from ui.tables import LEADERBOARD_COLUMNS, show_table
from ui.text import plain
from ui.visitor import current_visitor, studio_policy

SHARED_ONLY = ("owner", "yours")  # local mode has one person: no "who"


def show_leaderboard(records: list[RunRecord]) -> None:
    shared = studio_policy().shared
    st.subheader("Leaderboard")
    st.caption(("The best finished run of each visitor" if shared else "The best finished run of each run name")
               + ", by its last epoch's test accuracy; a tie (to the two decimals shown) goes to the earlier run. "
               "Sweep trials are left out (a sweep keeps its best trial by the test accuracy itself), and so are "
               "stopped, failed and diverged runs. A filter ranks each one's best run of that model or recipe."
               + (" Everyone sees every entry; only your own runs can be renamed or deleted, on the Train page." if shared else ""))
    models, recipes = filter_choices(records)
    left, right = st.columns(2)
    only_models = left.multiselect("Only the model", models, key="board_model")
    only_recipes = right.multiselect("Only the recipe", recipes, key="board_recipe")
    rows = leaderboard(records, by_owner=shared, viewer=current_visitor().id, models=only_models, recipes=only_recipes)
    if rows:
        frame = pd.DataFrame(rows)
        frame["link"] = [compare_link([run_id]) for run_id in frame["id"]]
        visible = [c for c in LEADERBOARD_COLUMNS if shared or c not in SHARED_ONLY]
        show_table(frame, {c: LEADERBOARD_COLUMNS[c] for c in visible}, "leaderboard")
    elif only_models or only_recipes:
        st.caption("No finished run matches these filters.")
    else:
        st.caption("No finished run yet: the first one to finish on the Train page leads.")
    shipped = shipped_rows(RunStore(paths.pretrained_dir()).list())
    if shipped:  # trained elsewhere, nobody's here: beside the ranking, not in it
        st.caption(plain("Not ranked, for reference: the shipped models, "
                         + "; ".join(f"{row['name']} ({row['model']}) {row['test_accuracy']:.2f}%" for row in shipped) + "."))
