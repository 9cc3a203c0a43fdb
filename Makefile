# kingest: every target sets up what it needs on a fresh Debian machine (venv, Python and
# Debian packages, the Kubernetes binaries, the image), so `make test` and `make demo` are all
# a newcomer types.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help venv platform image lint format test demo bench clean

help:
	@echo "make test    the whole suite: ruff, unit tests, and integration tests on a real one-node"
	@echo "             cluster (control plane, kubelet + containerd running our image), an"
	@echo "             S3-compatible server and Helm"
	@echo "make demo    the main job end to end on a local cluster (leaves it running)"
	@echo "make image   build the image from the Dockerfile with podman (as the tests run it)"
	@echo "make bench   the benchmarks in bench/ (slow; prints ratios against references)"
	@echo "make format  apply ruff's formatting"

venv: $(STAMP)

# Refreshed whenever the project's dependencies change.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (>= 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# The Debian packages of a real node, the Kubernetes binaries (from KUBEBUILDER_ASSETS, or
# built once per machine and cached in ~/.cache/kingest) and the image built from the
# Dockerfile (rebuilt when its inputs change). Needs root.
platform:
	@bash scripts/platform.sh >/dev/null

image:
	@bash scripts/image.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv platform lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: venv platform
	$(BIN)/python -m tests.platform.demo

bench: venv platform
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo build *.egg-info
