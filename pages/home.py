"""Home: the data set and the model zoo."""

import pandas as pd
import streamlit as st

from fmnist_core.data import CLASSES, class_counts, example_grid
from fmnist_core.models import list_models, model_info
from ui.state import dataset, model_card

st.title(":material/checkroom: Fashion-MNIST Studio")
st.caption("Train, understand and use image classifiers on Fashion-MNIST: 70,000 28x28 grayscale images of 10 clothing classes.")

data = dataset()
left, right = st.columns([3, 2])
with left:
    st.subheader("The data set")
    seed = st.session_state.setdefault("grid_seed", 0)
    st.image(example_grid(data.test_images, data.test_labels, per_class=12, seed=seed), width=12 * 28 * 2, clamp=True)
    if st.button("Show other examples", key="reshuffle"):
        st.session_state["grid_seed"] = seed + 1
        st.rerun()
with right:
    counts = pd.DataFrame({"class": CLASSES, "train": class_counts(data.train_labels), "test": class_counts(data.test_labels)})
    st.dataframe(counts, hide_index=True, width="stretch")
    st.caption(f"Rows of the mosaic, top to bottom: {', '.join(CLASSES)}. Files read from `{data.source}`.")

st.subheader("Model zoo")
st.caption("The report's five models reproduce its Figure 2 layer for layer; VGG11 and ours are new.")


def zoo() -> list[dict]:
    rows = []
    for name in list_models():
        params, table = model_card(name)
        info = model_info(name)
        rows.append({"name": name, "params": params, "description": info.description, "report": info.from_report, "table": table})
    return rows


for entry in zoo():
    badge = "report" if entry["report"] else "new"
    with st.expander(f"**{entry['name']}** · {entry['params']:,} params · {badge} — {entry['description']}"):
        st.dataframe(entry["table"], hide_index=True, width="stretch")
