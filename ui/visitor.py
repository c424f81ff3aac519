"""Who this session is and what it may do: the Streamlit side of fmnist_core.store.access.

In shared mode a visitor is the user Streamlit's `st.login` signed in (OIDC, configured
in .streamlit/secrets.toml [auth]) or else an anonymous visitor of this browser: a random
id the server signs and keeps in a cookie (fmnist_core.formats.identity), so a refresh, a new tab
and a server restart keep it, and a browser cannot make up someone else's. In local mode
everyone is the local admin.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from fmnist_core.base.errors import UserError
from fmnist_core.base.paths import runs_dir
from fmnist_core.formats import identity
from fmnist_core.formats.memory import estimate_memory
from fmnist_core.modeling.config import TrainConfig, config_problems
from fmnist_core.store.access import Policy, Visitor, studio_mode
from ui.page_state import PageState, SessionKey
from ui.text import plain


class VisitorState(PageState):
    """Who this session is, kept for the session's life (every page reads it)."""

    anonymous_id = SessionKey[str | None](None, key="visitor_id")  # an anonymous visitor's id, from their cookie or new


def _secrets() -> dict:
    """The secrets file as a dict; {} when there is none (local use needs none)."""
    return st.secrets.to_dict() if st.secrets.load_if_toml_exists() else {}


@st.cache_resource
def studio_policy() -> Policy:
    """This server's rules: the mode from FMNIST_STUDIO_MODE, admins and limits from the
    secrets' [studio] section. Read once per process (restart to change them)."""
    return Policy.from_settings(studio_mode(), _secrets().get("studio"), login=login_configured())


@st.cache_resource
def identity_secret() -> bytes:
    """The key that signs anonymous visitors' cookies: [studio] identity_secret, else the run
    store's own. Read once per process."""
    return identity.load_secret((_secrets().get("studio") or {}).get(identity.SECRET_SETTING), runs_dir())


def check_setup() -> Policy:
    """The policy, or one clear message (not a traceback) and a stopped page when the
    mode, the [studio] section or the identity secret is wrong. The router calls this before any page."""
    try:
        policy = studio_policy()
        if policy.shared:
            identity_secret()
        return policy
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
    state = VisitorState()
    if state.anonymous_id is None:
        # The cookie this browser sent when the session began; a missing, forged or foreign one
        # proves nothing, and this browser becomes a new visitor (remember_browser keeps it).
        cookie = st.context.cookies.get(identity.COOKIE_NAME)
        state.anonymous_id = identity.visitor_from_token(identity_secret(), cookie) or identity.new_visitor_id()
    return policy.visitor(str(state.anonymous_id), "anonymous visitor")


def remember_browser(visitor: Visitor) -> None:
    """Keep an anonymous visitor's id in their browser: Streamlit cannot set a cookie from
    Python, so a script in the page sets it (same site only, for a year from this visit). The
    element is the same on every rerun, so the browser runs it once per page load."""
    token = identity.token_for(identity_secret(), visitor.id)
    if token is None:  # not an id this server made (a logged-in user's e-mail)
        return
    secure = '(location.protocol === "https:" ? "; Secure" : "")'
    st.html(f'<script>document.cookie = "{identity.COOKIE_NAME}={token}; Max-Age={identity.COOKIE_MAX_AGE_S}; '
            f'Path=/; SameSite=Strict" + {secure};</script>', unsafe_allow_javascript=True)


def identity_sidebar() -> None:
    """In shared mode: who you are, what you may do, and log in / out where login is set up."""
    if not studio_policy().shared:
        return
    me = current_visitor()
    with st.sidebar:
        if st.user.to_dict().get("is_logged_in"):
            st.caption(f"Signed in as **{plain(me.name)}**" + (" · admin" if me.is_admin else ""))
            st.button("Log out", on_click=st.logout, key="logout")
        else:
            st.caption("You are an anonymous visitor: this browser keeps your runs yours "
                       "(a cookie, for a year after your last visit).")
            remember_browser(me)
            if login_configured():
                st.button("Log in", on_click=st.login, key="login")


def why_locked(run_owner: str | None, orphan: bool = False) -> str | None:
    """Why this visitor may not stop, rename or delete a run (None when they may): the
    reason a disabled button shows. `orphan`: cancel, stop or resume a run that outlived
    its server (RunManager.is_orphan)."""
    return studio_policy().why_not(current_visitor(), run_owner, orphan)


def act(action: Callable, *args) -> bool:
    """Run a run manager action (stop, rename, delete) as this visitor. A refusal, e.g. a
    forged click on a disabled button, is one message and changes nothing."""
    try:
        action(*args, visitor=current_visitor())
    except UserError as e:
        st.error(plain(f"{str(e)[:1].upper()}{str(e)[1:]}. Nothing was changed."))  # may quote a run id or name
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
