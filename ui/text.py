"""User text (run names) shown as text: never interpreted as Markdown, HTML, emoji or icons."""

from __future__ import annotations

import html
import re

# CommonMark lets any ASCII punctuation be backslash-escaped, and an escaped character is
# always literal; that also covers Streamlit's own syntax (:red[..], :material/x:, $math$).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: str) -> str:
    """`text` escaped for a Streamlit call that renders Markdown (st.markdown, labels, help),
    for messages that quote what a user typed. (Bare URLs may still be shown as links:
    for names use `literal`, which shows text only.)"""
    return _PUNCTUATION.sub(r"\\\1", text)


def literal(text: str) -> str:
    """`text` as a Markdown code span: shown character for character, no link, image,
    emphasis or HTML, whatever it holds (the fence is longer than any backtick run inside)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def heading_html(text: str, limit: int) -> str:
    """A level-3 heading holding `text` as text (escaped), cut at `limit` characters with
    the whole text in its tooltip: for st.html, as st.subheader would render Markdown."""
    return f'<h3 title="{html.escape(text)}" style="overflow-wrap:anywhere">{html.escape(truncate(text, limit))}</h3>'
