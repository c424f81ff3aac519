# Two commands do everything on a fresh machine: `make run` and `make test`.
# Each step is skipped when already done, so a second run takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# `make run` is for the person at this machine; `make share` serves every interface.
ADDRESS ?= 127.0.0.1

.PHONY: run share test quick lint typecheck setup setup-test data e2e bench clean

run: setup
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT) --server.address $(ADDRESS)

# A team or a class: every interface, runs with owners, limits, no error details
# (README, "Sharing the Studio"). `make share RAY=HOST:PORT`: Train-page runs train on that Ray cluster.
RAY ?=
share: setup
	FMNIST_STUDIO_MODE=shared $(if $(RAY),FMNIST_RAY_ADDRESS=$(RAY)) $(BIN)/streamlit run streamlit_app.py --server.port $(PORT) \
		--server.address 0.0.0.0 --client.showErrorDetails none

test: setup-test lint typecheck
	$(BIN)/python -m pytest

# The inner loop: everything but the browser, Ray, slow and full-data tests (markers in pytest.ini), on
# the cores this process may use (pytest-xdist; `make quick WORKERS=1` for one process). `make test`
# still runs all of it, and CI runs `make test`.
# nproc: the cores this process may use (taskset, cgroups); -n auto would count all of them where psutil is installed
WORKERS ?= $(shell nproc)
quick: setup $(VENV)/.test-installed lint
	$(BIN)/python -m pytest -m "not e2e and not ray and not slow and not full_data" -n $(WORKERS) --dist loadgroup --durations=5

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

# Files, settings and the packages without type hints: [tool.mypy] in pyproject.toml.
typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

setup: $(VENV)/.app-installed data

setup-test: setup $(VENV)/.test-installed
	@./scripts/ensure_system.sh --browser

$(VENV)/.app-installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.app-installed
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# The data: Debian's package where apt-get works, else torchvision's mirrors into ./data/.
data: $(VENV)/.app-installed
	@./scripts/ensure_system.sh
	@$(BIN)/python -m fmnist_core data

e2e: setup-test
	$(BIN)/python -m pytest tests/e2e

bench: setup
	$(BIN)/python -m fmnist_core bench

clean:
	rm -rf $(VENV) .pytest_cache
