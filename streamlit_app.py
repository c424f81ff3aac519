"""Fashion-MNIST Studio: the router. Each page lives in pages/ and stays thin."""

import streamlit as st

from ui.visitor import check_setup, identity_sidebar

st.set_page_config(page_title="Fashion-MNIST Studio", page_icon=":material/checkroom:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/draw:"),
        st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
    ]
)
check_setup()  # a wrong FMNIST_STUDIO_MODE or [studio] section: one message, no page
identity_sidebar()
navigation.run()
