"""Train-form widgets made from TrainConfig's setting declarations (fmnist_core.modeling.config.SETTINGS).

The widgets carry no limits of their own: a value the user types reaches
`config_problems`, which applies the config's own ranges, so the page shows the same
message `train` and `validate()` give, and never runs a value the screen does not show.
"""

from __future__ import annotations

from collections.abc import Sequence

from fmnist_core.base.errors import UserError
from fmnist_core.modeling.config import DEFAULTS, SETTINGS, unused_settings
from ui.text import plain

FORMATS = {"patch": lambda p: "off" if p == 0 else f"{p}x{p} tiles"}
# "%g" shows a value as typed (1e-09, 0.15): "%.5f" showed an lr of 1e-9 as 0.00000.
FLOAT_FORMATS = {"lr": "%g", "weight_decay": "%g", "ema": "%g"}


def widget_key(name: str) -> str:
    return f"f_{name}"


# Whole-number settings sit in float widgets: an int widget's browser side cuts what is typed
# (epochs "2.5" became 2, "1e9" became 1, and Start ran that). A float widget keeps the
# number, and the config's own check marks it on its field ("2.5 is not a whole number").
def to_widget(name: str, value):
    """A setting's value as its widget holds it."""
    return float(value) if SETTINGS[name].kind == "int" and value is not None else value


def from_widget(name: str, value):
    """A widget's value as the setting's: a whole float back to int; anything else as it is."""
    if SETTINGS[name].kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def setting_widget(container, name: str, disabled: bool = False, placeholder: str | None = None, problem: str | None = None) -> None:
    """The widget for one setting, its value in st.session_state[widget_key(name)];
    `problem` (from config_problems) is shown under it."""
    declared = SETTINGS[name]
    key = widget_key(name)
    help_text = f"{declared.help} Allowed: {declared.describe_range()}{' ' + declared.unit if declared.unit else ''}."
    if declared.kind == "choice":
        container.selectbox(declared.label, declared.allowed(), key=key, help=help_text, disabled=disabled,
                            format_func=FORMATS.get(name, str))
    elif declared.kind == "bool":
        container.checkbox(declared.label, key=key, help=help_text, disabled=disabled)
    elif declared.kind == "text":
        container.text_input(declared.label, key=key, help=help_text, disabled=disabled, placeholder=placeholder or "optional")
    elif declared.kind == "int":
        container.number_input(declared.label, step=float(declared.step or 1), format="%g", key=key, help=help_text,
                               disabled=disabled, placeholder=placeholder)
    else:
        container.number_input(declared.label, step=float(declared.step or 0.01), format=FLOAT_FORMATS.get(name, "%.3f"), key=key,
                               help=help_text, disabled=disabled, placeholder=placeholder)
    if problem:
        container.error(f"{declared.label}: {problem}", icon=":material/error:")


def setting_widgets(containers: Sequence, names: list[str], problems: dict[str, str], link_problems: dict[str, str],
                    disabled: dict[str, bool] | None = None, placeholders: dict[str, str] | None = None) -> None:
    """The widgets of `names`, dealt in turn into `containers` (columns), each with its
    problem, and a note where the link's value for it was dropped."""
    disabled, placeholders = disabled or {}, placeholders or {}
    for i, name in enumerate(names):
        container = containers[i % len(containers)]
        setting_widget(container, name, disabled=disabled.get(name, False), placeholder=placeholders.get(name),
                       problem=problems.get(name))
        if name in link_problems:  # the link's text is anyone's: shown escaped
            container.caption(f":orange[:material/link_off: {plain(link_problems[name])}; the default is shown.]")


# ---- the form as a link: only the settings that differ from the defaults -------------------

def query_from_form(values: dict) -> dict[str, str]:
    """The form's values as query parameters (text), only those that differ from DEFAULTS."""
    return {name: _as_text(value) for name, value in values.items() if name in SETTINGS and value != DEFAULTS[name]}


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "default" if value is None else str(value)


def form_from_query(params: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """(values, problems) from a link's query parameters. Each value is parsed with its
    setting's own parser; one that cannot be parsed (or a choice the list lacks, which a
    select box cannot hold) is left out and reported under its field. Values that parse but
    are out of range are kept: the form then marks them itself (config_problems)."""
    values, problems = {}, {}
    for name, text in params.items():
        if name not in SETTINGS:
            continue  # another page's parameter, or an old link: not ours to judge
        declared = SETTINGS[name]
        try:
            value = declared.parse(text)
            if declared.kind in ("choice", "bool"):
                declared.check(name, value)
        except UserError as e:
            problems[name] = f"not from the link: {getattr(e, 'message', e)}"
            continue
        values[name] = value
    return values, problems


def config_summary(values: dict) -> str:
    """One line with exactly what will train: the main settings, then every other one that
    differs from its default (settings the config does not use, unused_settings, are left out)."""
    v = values
    unused = unused_settings(v)
    optimizer = f"{v['optimizer']} lr {v['lr']:g}"
    if "momentum" not in unused and v["momentum"]:
        optimizer += f", momentum {v['momentum']:g}" + (" Nesterov" if "nesterov" not in unused and v["nesterov"] else "")
    if v["weight_decay"]:
        optimizer += f", weight decay {v['weight_decay']:g}"
    model = v["model"] + (f" width {v['width']}" if "width" not in unused and v["width"] is not None else "")
    parts = [model, optimizer, f"batch {v['batch_size']}", f"{v['epochs']} epoch{'s' if v['epochs'] != 1 else ''}"]
    shown = {"model", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "width", "batch_size", "epochs", "name", "seed"}
    for name, declared in SETTINGS.items():
        if name in shown or name in unused or v[name] == DEFAULTS[name]:
            continue
        value = v[name]
        parts.append(declared.label.lower() if value is True else f"{declared.label.lower()} {_as_text(value)}")
    parts.append(f"seed {v['seed']}")
    return " · ".join(parts)
