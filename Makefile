# The README's two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
EXTRAS ?= all
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: setup demo test clean

setup: $(STAMP)

# torch goes first and pinned (constraints.txt): any other spec pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(VENV)/bin/csrefiner demo --out results/demo --force

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache
