import re

from ui.text import plain


def test_user_text_is_escaped_for_markdown():
    name = "![t](http://host/track.png) *bold* _x_ #1 <b>hi</b> `code` [link](x)"
    escaped = plain(name)
    assert re.sub(r"\\(.)", r"\1", escaped) == name  # shown as typed
    assert not re.search(r"(?<!\\)[!\[\]()*_<>`#]", escaped)  # and every Markdown mark escaped
    assert plain("shoe photo 2.png") == "shoe photo 2\\.png"
