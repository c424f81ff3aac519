"""Who this session is and what it may do: the Streamlit side of fmnist_core.access.

In shared mode a visitor is the user Streamlit's `st.login` signed in (OIDC, configured
in .streamlit/secrets.toml [auth]) or else an anonymous visitor of this browser session:
a random id kept in st.session_state, so two tabs are two visitors, and a refresh is a
new one (log in to keep your runs across visits). The id lives on the server only, so a
browser cannot claim someone else's. In local mode everyone is the local admin.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import streamlit as st

from fmnist_core.access import Policy, Visitor, studio_mode
from fmnist_core.config import TrainConfig, config_problems
from fmnist_core.errors import UserError
from fmnist_core.memory import estimate_memory

ANONYMOUS_KEY = "visitor_id"  # st.session_state key of an anonymous visitor's id


def _secrets() -> dict:
    """The secrets file as a dict; {} when there is none (local use needs none)."""
    return st.secrets.to_dict() if st.secrets.load_if_toml_exists() else {}


@st.cache_resource
def studio_policy() -> Policy:
    """This server's rules: the mode from FMNIST_STUDIO_MODE, admins and limits from the
    secrets' [studio] section. Read once per process (restart to change them)."""
    return Policy.from_settings(studio_mode(), _secrets().get("studio"))


def check_setup() -> Policy:
    """The policy, or one clear message (not a traceback) and a stopped page when the
    mode or the [studio] section is wrong. The router calls this before any page."""
    try:
        return studio_policy()
    except UserError as e:
        st.error(f"The Studio is not set up correctly: {e}.")
        st.stop()


def login_configured() -> bool:
    return "auth" in _secrets()


def current_visitor() -> Visitor:
    policy = studio_policy()
    if not policy.shared:
        return policy.local_visitor()
    user = st.user.to_dict()  # a dict: no attribute errors when [auth] is not configured
    if user.get("is_logged_in"):
        user_id = str(user.get("email") or user.get("sub")).strip().lower()
        return policy.visitor(user_id, str(user.get("name") or user_id))
    anonymous = st.session_state.setdefault(ANONYMOUS_KEY, f"anon:{secrets.token_hex(8)}")
    return policy.visitor(anonymous, "anonymous visitor")


def identity_sidebar() -> None:
    """In shared mode: who you are, what you may do, and log in / out where login is set up."""
    if not studio_policy().shared:
        return
    me = current_visitor()
    with st.sidebar:
        if st.user.to_dict().get("is_logged_in"):
            st.caption(f"Signed in as **{me.name}**" + (" · admin" if me.is_admin else ""))
            st.button("Log out", on_click=st.logout, key="logout")
        else:
            st.caption("You are an anonymous visitor: your runs are yours while this tab stays open.")
            if login_configured():
                st.button("Log in", on_click=st.login, key="login")


def why_locked(run_owner: str | None) -> str | None:
    """Why this visitor may not stop, rename or delete a run (None when they may): the
    reason a disabled button shows."""
    return studio_policy().why_not(current_visitor(), run_owner)


def act(action: Callable, *args) -> bool:
    """Run a run manager action (stop, rename, delete) as this visitor. A refusal, e.g. a
    forged click on a disabled button, is one message and changes nothing."""
    try:
        action(*args, visitor=current_visitor())
    except UserError as e:
        st.error(f"{str(e)[:1].upper()}{str(e)[1:]}. Nothing was changed.")
        return False
    return True


def limit_problems(values: dict) -> dict[str, str]:
    """Form fields over this server's limits, {field: message} (valid values only)."""
    if not studio_policy().shared or config_problems(values):
        return {}
    return studio_policy().setting_problems(TrainConfig.from_dict(values))


@st.cache_data(max_entries=256, show_spinner=False)
def _estimate_text(values: dict) -> str:
    return estimate_memory(TrainConfig.from_dict(values)).describe()


def limits_caption(values: dict, manager) -> str:
    """The limits, how many of them this visitor uses and this form's memory estimate, one
    line under Start; empty in local mode."""
    policy = studio_policy()
    if not policy.shared:
        return ""
    me = current_visitor()
    text = policy.describe_limits(manager.active_owners().count(me.id))  # a running sweep's trials at once too
    if not config_problems(values):
        text += f" · this run needs {_estimate_text(values)}"
    return text
