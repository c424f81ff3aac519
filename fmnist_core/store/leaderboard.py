"""The leaderboard: the best finished run of each visitor (shared mode) or of each run name
(local mode), ranked by test accuracy. RunRecords in, plain rows out (the Compare page shows them).

What is ranked, and why:
- finished runs only: a stopped, failed, diverged, interrupted or cancelled run (or one still
  queued or training) has no final figure to stand by;
- no sweep trials: a sweep keeps its best trial by the test accuracy itself (sweep.METRIC), so
  that trial's figure is picked on the test set and would outrank single runs by the search,
  not the recipe;
- the figure is the last epoch's test accuracy, the one of the weights the run saved.
Ties (equal to the two decimals shown) go to the earlier run: the one created first.
Shipped models were trained elsewhere and belong to nobody here: `shipped_rows` lists them apart.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

from fmnist_core.base.statuses import RunStatus
from fmnist_core.formats.identity import ANONYMOUS_PREFIX
from fmnist_core.modeling.config import TrainConfig
from fmnist_core.modeling.recipes import CUSTOM, RECIPES
from fmnist_core.store.access import LOCAL_OWNER
from fmnist_core.store.run_store import RunRecord

SHOWN_DECIMALS = 2  # accuracies show two decimals: runs equal there are a tie
# Settings a recipe leaves to the run: a run of `fast` for 4 epochs, seed 3, on 1 thread is still `fast`.
NOT_THE_RECIPE = ("name", "epochs", "seed", "device", "threads")


def final_accuracy(record: RunRecord) -> float | None:
    """The last epoch's test accuracy (None when it has none or it is not a number)."""
    value = record.history[-1].get("test_accuracy") if record.history else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def is_ranked(record: RunRecord) -> bool:
    """A finished run of its own (no sweep's trial) with a test figure."""
    return record.status == RunStatus.FINISHED and not record.sweep and final_accuracy(record) is not None


def recipe_of(config: dict) -> str:
    """The recipe whose settings the run trained with (epochs, seed and where it ran aside), else CUSTOM."""
    defaults = TrainConfig().to_dict()  # a setting a config (or recipe) leaves out has its default
    full = {**defaults, **config}
    for recipe, settings in RECIPES.items():
        recipe_settings = {**defaults, **settings}
        if all(full.get(k) == v for k, v in recipe_settings.items() if k not in NOT_THE_RECIPE):
            return recipe
    return CUSTOM


def owner_label(owner: str, viewer: str) -> str:
    """Who a run's owner is, for everyone to read: "you" for the viewer's own; any other
    visitor by a short tag derived from their id, never the id: an anonymous one's is their
    identity (carried in their cookie), a signed-in one's their e-mail, which classmates should
    not be shown. (The tag is unsalted: someone who guesses an e-mail can check it.)"""
    if owner and owner == viewer:
        return "you"
    if owner == LOCAL_OWNER:
        return "the command line"
    if not owner:
        return "nobody (a run from before owners)"
    tag = hashlib.sha256(owner.encode()).hexdigest()[:6]
    return f"anonymous visitor {tag}" if owner.startswith(ANONYMOUS_PREFIX) else f"signed-in visitor {tag}"


def _order(record: RunRecord) -> tuple:
    """Best first: test accuracy as shown, then the earlier run, then the id (one order for everyone)."""
    accuracy = final_accuracy(record)
    assert accuracy is not None  # only ranked runs (is_ranked) are ordered
    return -round(accuracy, SHOWN_DECIMALS), record.created, record.id


def _row(rank: int, record: RunRecord, viewer: str) -> dict:
    summary = record.summary()
    return {
        "rank": rank, "owner": owner_label(record.owner, viewer), "yours": bool(record.owner) and record.owner == viewer,
        "name": record.name, "model": summary["model"], "recipe": recipe_of(record.config),
        "test_accuracy": final_accuracy(record), "params": summary["params"], "seconds": summary["seconds"],
        "created": record.created, "id": record.id,
    }


def leaderboard(records: list[RunRecord], by_owner: bool, viewer: str = "", models: list[str] | None = None,
                recipes: list[str] | None = None) -> list[dict]:
    """The best ranked run of each owner (`by_owner`) or run name, best first, numbered from 1.
    `models`, `recipes` (empty or None: all): only runs of those count, so a filter shows each
    one's best run of that model or recipe. `viewer`: the visitor looking (their rows are "yours")."""
    best: dict[str, RunRecord] = {}
    for record in sorted((r for r in records if is_ranked(r)), key=_order):
        if models and record.config.get("model") not in models:
            continue
        if recipes and recipe_of(record.config) not in recipes:
            continue
        best.setdefault(record.owner if by_owner else record.name, record)  # sorted best first: the first one seen is the best
    return [_row(rank, record, viewer) for rank, record in enumerate(best.values(), start=1)]


def filter_choices(records: list[RunRecord]) -> tuple[list[str], list[str]]:
    """(models, recipes) of the ranked runs, sorted: what the leaderboard's filters offer."""
    ranked = [r for r in records if is_ranked(r)]
    return (sorted({str(r.config.get("model")) for r in ranked}),
            sorted({recipe_of(r.config) for r in ranked}))


def shipped_rows(records: list[RunRecord]) -> list[dict]:
    """The shipped models (their folder is their name), best first, for reference beside the ranking."""
    named = [replace(r, name=r.id, owner="", sweep=None) for r in records]
    return leaderboard(named, by_owner=False)
