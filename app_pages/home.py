"""Home: four ways in, what "the report" is, the data set and the model zoo.

Everything shown is cached per process (st.cache_data), so a visit to a warm server draws
the page at once; the ways in come first, before anything that reads the data."""

import pandas as pd
import streamlit as st

from fmnist_core.images.data import CLASSES, class_counts, example_grid
from fmnist_core.modeling.models import list_models, model_info
from fmnist_core.modeling.recipes import DESCRIPTIONS
from ui.page_state import PageState, SessionKey
from ui.state import dataset, model_card
from ui.text import literal
from ui.visitor import studio_policy

FAST_PRESET = "fast"  # the recipe behind "a 90% model in under a minute" (README: 90% after ~8 s here)

st.title(":material/checkroom: Fashion-MNIST Studio")
st.caption("Train, understand and use image classifiers on Fashion-MNIST: 70,000 28x28 grayscale images of 10 clothing classes.")

st.subheader("Where to start")
try_it, train_it, report_it, sweep_it = st.columns(4)
with try_it.container(border=True):
    st.page_link("app_pages/predict.py", label="Try a trained model", icon=":material/draw:")
    st.caption("Draw a piece of clothing or upload a photo; two trained models ship with the Studio.")
with train_it.container(border=True):
    st.page_link("app_pages/train.py", label="Train a 90% model in under a minute", icon=":material/model_training:",
                 query_params={"preset": FAST_PRESET})
    st.caption(f"Opens Train with the `{FAST_PRESET}` preset ({DESCRIPTIONS[FAST_PRESET]}); press Start and watch it learn.")
with report_it.container(border=True):
    st.page_link("app_pages/compare.py", label="See the report reproduced", icon=":material/compare_arrows:",
                 query_params={"view": "Table 1"})
    st.caption("Its Table 1 beside our numbers, and what each model gets wrong.")
with sweep_it.container(border=True):
    st.page_link("app_pages/sweep.py", label="Search for better settings", icon=":material/tune:")
    st.caption("Many runs at once on Ray: a grid or a random (or Optuna) search over learning rate, batch size and more, "
               "with the best trial ranked.")
st.markdown("**The report** is the course report this Studio grew from: five small networks (two MLPs, three CNNs) "
            "built to pass 90% test accuracy on Fashion-MNIST. The Studio rebuilds them layer for layer (its Figure 2), "
            "retrains them with its recipe (its Table 1), and then tries to beat them.")


@st.cache_data(show_spinner=False)
def mosaic(seed: int):
    """The example grid (uint8, 10 rows of 12 test images) for one reshuffle."""
    data = dataset()
    return example_grid(data.test_images, data.test_labels, per_class=12, seed=seed)


@st.cache_data(show_spinner=False)
def counts() -> tuple[pd.DataFrame, str]:
    data = dataset()
    table = pd.DataFrame({"class": CLASSES, "train": class_counts(data.train_labels), "test": class_counts(data.test_labels)})
    return table, str(data.source)


@st.cache_data(show_spinner=False)
def zoo() -> list[dict]:
    rows = []
    for name in list_models():
        params, table = model_card(name)
        info = model_info(name)
        rows.append({"name": name, "params": params, "description": info.description, "report": info.from_report, "table": table})
    return rows


class HomeState(PageState):
    grid_seed = SessionKey[int](0)  # which examples the mosaic shows


state = HomeState()
left, right = st.columns([3, 2])
with left:
    st.subheader("The data set")
    st.image(mosaic(state.grid_seed), width=12 * 28 * 2, clamp=True)
    if st.button("Show other examples", key="reshuffle"):
        state.grid_seed += 1
        st.rerun()
with right:
    table, source = counts()
    st.table(table.set_index("class"))  # static HTML: st.dataframe shows a grey placeholder while its grid loads
    # Where the server keeps its files is for its operator, not for a shared Studio's visitors.
    where = "" if studio_policy().shared else f" Files read from {literal(source)}."
    st.caption(f"Rows of the mosaic, top to bottom: {', '.join(CLASSES)}.{where}")

st.subheader("Model zoo")
st.caption("The report's five models reproduce its Figure 2 layer for layer; VGG11 and ours are new.")
for entry in zoo():
    badge = "report" if entry["report"] else "new"
    with st.expander(f"**{entry['name']}** · {entry['params']:,} params · {badge} — {entry['description']}"):
        st.table(entry["table"], hide_index=True)  # static HTML: ten data grids cost the first paint 0.17 s
