"""Train-form widgets made from TrainConfig's setting declarations (fmnist_core.config.SETTINGS).

The widgets carry no limits of their own: a value the user types reaches
`config_problems`, which applies the config's own ranges, so the page shows the same
message `train` and `validate()` give, and never runs a value the screen does not show.
"""

from __future__ import annotations

from fmnist_core.config import SETTINGS

FORMATS = {"patch": lambda p: "off" if p == 0 else f"{p}x{p} tiles"}
FLOAT_FORMATS = {"lr": "%.5f", "weight_decay": "%.5f", "ema": "%.5f"}


def widget_key(name: str) -> str:
    return f"f_{name}"


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
        container.number_input(declared.label, step=int(declared.step or 1), key=key, help=help_text, disabled=disabled,
                               placeholder=placeholder)
    else:
        container.number_input(declared.label, step=float(declared.step or 0.01), format=FLOAT_FORMATS.get(name, "%.3f"), key=key,
                               help=help_text, disabled=disabled, placeholder=placeholder)
    if problem:
        container.error(f"{declared.label}: {problem}", icon=":material/error:")
