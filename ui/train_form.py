"""The Train form across reruns: from the link on a fresh visit, from a preset when one is
chosen, from the session's widgets otherwise; the address bar is kept equal to it."""

from __future__ import annotations

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, unused_settings
from fmnist_core.modeling.models import ModelInfo
from fmnist_core.modeling.recipes import CUSTOM, DESCRIPTIONS, RECIPES
from ui.form import form_from_query, query_from_form
from ui.text import plain
from ui.train_state import TrainState

PRESETS = [CUSTOM, *RECIPES]
OFF_FOR_SOME_MODELS = ("dropout", "width", "softmax_output")


def preset_values(preset: str) -> dict:
    """The form a recipe fills: its settings, the defaults for the rest, and its name."""
    return {**DEFAULTS, **RECIPES[preset], "name": preset}


def apply_preset(state: TrainState) -> None:
    """Fill the form from the chosen recipe (fields it does not set get the defaults)."""
    if state.preset is None or state.preset == CUSTOM:
        return
    state.fill_form(preset_values(state.preset))
    state.preset_base = state.preset
    state.link_problems = {}


def preset_label(preset: str, base: str | None) -> str:
    if preset == CUSTOM:
        return f"custom (from {base})" if base else CUSTOM
    return f"{preset} – {DESCRIPTIONS.get(preset, 'the report recipe')}"


def sync_form(state: TrainState, query: dict[str, str]) -> tuple[dict, dict[str, str] | None]:
    """(the form's values, the address bar's new query or None when it already holds them).

    A fresh visit (or a browser refresh) reads the form from the link. Home's "train a 90%
    model" links with ?preset=fast: the preset is applied once and dropped from the address;
    the link's own settings (?preset=fast&epochs=4&name=mine) win over the preset's."""
    if state.form_saved is None:
        from_link, state.link_problems = form_from_query(query)
        state.form_saved = {**DEFAULTS, **from_link}
    state.restore_widgets()
    if query.get("preset") in RECIPES:
        link_values, link_problems = form_from_query(query)
        state.preset = query["preset"]
        apply_preset(state)
        state.fill_form(link_values)
        state.link_problems = link_problems
        state.form_saved = state.form_values()  # the link's form, not an edit
    if state.form_values()["model"] != "cnn_b":  # the quirk exists only there; off, not an error
        state.fill_form({"softmax_output": False})
    values = state.form_values()
    # a field the user has edited since is theirs again
    state.link_problems = {f: why for f, why in state.link_problems.items() if values[f] == state.form_saved[f]}
    state.form_saved = values
    base = state.preset_base
    if base and state.preset == base and any(values[f] != v for f, v in preset_values(base).items() if f != "name"):
        state.preset = CUSTOM  # the form no longer is that preset; choosing it again re-applies it
    new_query = query_from_form(values)  # the address bar holds the form: refresh-proof, shareable
    return values, (new_query if new_query != query else None)


def off_fields(model: ModelInfo) -> tuple[dict[str, bool], dict[str, str]]:
    """({field: disabled}, {field: placeholder}) for the settings `model` may not use: such a
    field is off, its value then not used by training, and its placeholder says why."""
    unused = unused_settings({"model": model.name})
    disabled = {name: name in unused for name in OFF_FOR_SOME_MODELS}
    placeholders = {"dropout": f"model default ({model.default_dropout})" if model.default_dropout is not None else "no dropout",
                    "width": "model default"}
    return disabled, placeholders


def start_error(error: UserError) -> str:
    """Why Start was refused, as Markdown: the field's label first where the error names one."""
    field_name = getattr(error, "field", None)
    label = f"**{SETTINGS[field_name].label}**: " if field_name in SETTINGS else ""
    message = plain(getattr(error, "message", str(error)))
    return f"{label}{message if label else message[:1].upper() + message[1:]}. Nothing was started."
