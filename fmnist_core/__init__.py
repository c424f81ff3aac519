"""Fashion-MNIST Studio core: data, models, training, runs, checkpoints, inference.

Free of Streamlit on purpose (a test checks it): everything here also runs headless
from `python -m fmnist_core`.
"""

from fmnist_core.base.threads import set_openmp_wait_policy

__version__ = "0.1.0"

set_openmp_wait_policy()  # before any of our modules imports torch: OpenMP reads it once, on load
