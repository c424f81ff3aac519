"""User text (run names) shown as text: never interpreted as Markdown, HTML, emoji or icons."""

from __future__ import annotations

import html

from fmnist_core.base.markdown_text import code_fence, escape_markdown, one_line


def plain(text: str) -> str:
    """`text` escaped for a Streamlit call that renders Markdown (st.markdown, labels, help,
    st.table's cells), for messages that quote what a user typed. (Bare URLs may still be
    shown as links: for names use `literal`, which shows text only.)"""
    return escape_markdown(text)


def literal(text: str) -> str:
    """`text` as a Markdown code span: shown character for character, no link, image,
    emphasis or HTML, whatever it holds (the fence is longer than any backtick run inside;
    line breaks, which would end the span, are spaces)."""
    text = one_line(text)
    fence = code_fence(text)
    return f"{fence} {text} {fence}"


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def heading_html(text: str, limit: int) -> str:
    """A level-3 heading holding `text` as text (escaped), cut at `limit` characters with
    the whole text in its tooltip: for st.html, as st.subheader would render Markdown."""
    return f'<h3 title="{html.escape(text)}" style="overflow-wrap:anywhere">{html.escape(truncate(text, limit))}</h3>'
