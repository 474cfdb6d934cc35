# Two commands do all set-up on a fresh machine:
#   make test   create .venv if missing, install eie with its test dependencies, run pytest
#   make demo   create .venv if missing, install eie with the demo dependencies, run the main job
#   make formal the formal proofs (docs/formal.md: EIE control, BNN streams, UART bridge), every
#               configuration, each property's result
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# pytest options; the default runs the CI suite on 2 workers. `make test-full` runs every matrix.
PYTEST_ARGS ?= -n 2 --dist worksteal -m "not slow"
DEMO_ARGS ?=
# pytest options of `make formal`: every proof, slow ones included (`-m slow` for those alone)
FORMAL_ARGS ?= -n 2 -m ""

.PHONY: test test-full formal demo venv clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

test-full: $(VENV)/.installed
	$(PY) -m pytest -n 2

formal: $(VENV)/.installed
	$(PY) -m pytest tests/test_formal.py tests/test_formal_bnn_bridge.py $(FORMAL_ARGS) -rP

demo: $(VENV)/.installed
	$(VENV)/bin/eie demo $(DEMO_ARGS)

clean:
	rm -rf out build .pytest_cache
