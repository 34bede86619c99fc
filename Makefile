# Every target creates (once) and reuses the local virtualenv in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format demo bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Install (once), create the demo experiments if checkpoints/ has none, start the app.
run: $(STAMP)
	$(BIN)/python -m fxcore demo --if-missing
	$(BIN)/python -m streamlit run app/Home.py

## Install (once) and run the test suite (CPU only, no downloads).
test: $(STAMP)
	$(BIN)/python -m ruff check fxcore app tests benchmarks
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python -m fxcore demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/python -m ruff check fxcore app tests benchmarks
	$(BIN)/python -m ruff format --check fxcore app tests benchmarks

format: $(STAMP)
	$(BIN)/python -m ruff format fxcore app tests benchmarks
	$(BIN)/python -m ruff check --fix fxcore app tests benchmarks

clean-venv:
	rm -rf $(VENV)
