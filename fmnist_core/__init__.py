"""Fashion-MNIST Studio core: data, models, training, runs, checkpoints, inference.

Free of Streamlit on purpose (a test checks it): everything here also runs headless
from `python -m fmnist_core`.
"""

__version__ = "0.1.0"
