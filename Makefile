# Two commands on a fresh machine: `make demo` and `make test`. Run from the repository root.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dermkit
# pytest-xdist processes for `make test`: most tests are single-threaded Python and process start-up,
# so two processes on 2 cores cut the suite by about a third (README "Tests").
TEST_WORKERS ?= 2

.PHONY: install demo test test-all test-fast clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# `python -m ssl.<stage>` outside the repository root: one clear line instead of Python's error (dermkit/ssl_hint.py)
	$(PY) -c "import pathlib, sysconfig, dermkit.ssl_hint as h; pathlib.Path(sysconfig.get_paths()['purelib'], h.PTH_NAME).write_text(h.PTH_LINE)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m bench.label_efficiency --preset demo

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not long" --durations=15

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
