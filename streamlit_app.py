"""Fashion-MNIST Studio: the router. Each page lives in app_pages/ and stays thin (not pages/: see README, Layout)."""

import streamlit as st

from ui.visitor import check_setup, identity_sidebar

st.set_page_config(page_title="Fashion-MNIST Studio", page_icon=":material/checkroom:", layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/draw:"),
        st.Page("app_pages/sweep.py", title="Sweep", icon=":material/tune:"),
    ]
)
check_setup()  # a wrong FMNIST_STUDIO_MODE or [studio] section: one message, no page
identity_sidebar()
navigation.run()
