"""Where the checkout and the app are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
APP = str(ROOT / "streamlit_app.py")
