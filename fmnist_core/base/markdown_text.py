"""User text (run names, stored messages) made inert for Markdown: shown character for
character by any CommonMark or GitHub renderer, never read as an image, a link, a heading,
a table cell break or HTML. Used by the model card here and by the app's pages (ui.text)."""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be backslash-escaped, and an escaped character is
# always literal: that covers images, links, emphasis, headings, HTML tags, a table's `|`,
# and Streamlit's own syntax (:red[..], :material/x:, $math$) too.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Line breaks, tabs and other control characters: a blank line would end a code span or a
# paragraph (or a table row), and what follows would be read as new Markdown; user text is
# one line, so each run of them is shown as one space.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` with each run of line breaks and control characters made one space."""
    return _CONTROL.sub(" ", text)


def escape_markdown(text: str) -> str:
    """`text` on one line, every Markdown mark in it escaped."""
    return _PUNCTUATION.sub(r"\\\1", one_line(text))


def code_fence(text: str) -> str:
    """A run of backticks longer than any inside `text`: a code span or block fenced with it
    cannot be closed early by the text."""
    return "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
