"""User text (file names, run names, folder names) inside our Markdown messages."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def plain(text: str) -> str:
    """`text` backslash-escaped for st.markdown and the message boxes, so it shows as typed:
    no links, images (a `![t](http://...)` name would make every viewer fetch a URL) or formatting."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
