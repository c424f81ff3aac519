"""Tests of the app: its pages through AppTest, and the Streamlit-side helpers in ui/."""
