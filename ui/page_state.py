"""A page's session state as one typed object: each field a SessionKey, kept under its own
st.session_state key (the key a widget, another page or a test may use too)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, Generic, TypeVar, overload

import streamlit as st

T = TypeVar("T")


class PageState:
    """Base of a page's state: fields are SessionKeys; `session` is st.session_state, or any
    mapping (a plain dict in tests, without Streamlit running)."""

    def __init__(self, session: MutableMapping[str, Any] | None = None):
        self.session = st.session_state if session is None else session


class SessionKey(Generic[T]):
    """A field of a page's state, kept under its own key (its attribute name unless given).
    Setting it to None removes the key: "absent" and "None" are one state."""

    def __init__(self, default: T, key: str | None = None, factory: Callable[[], T] | None = None):
        self.default, self.factory = default, factory
        self.key: str = key or ""  # set by __set_name__ when not given

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = self.key or name

    @overload
    def __get__(self, state: None, owner: type) -> SessionKey[T]: ...
    @overload
    def __get__(self, state: PageState, owner: type) -> T: ...

    def __get__(self, state, owner=None):
        if state is None:
            return self
        if self.factory is not None:  # a mutable default is the session's own, never shared
            return state.session.setdefault(self.key, self.factory())
        return state.session.get(self.key, self.default)

    def __set__(self, state: PageState, value: T) -> None:
        if value is None:
            state.session.pop(self.key, None)
        else:
            state.session[self.key] = value
