# Every target creates (once) and reuses the local virtualenv in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test reliability lint format demo bench study docker-check clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Install (once), create the demo experiments if checkpoints/ has none, start the app.
run: $(STAMP)
	$(BIN)/python -m fxcore demo --if-missing
	$(BIN)/python -m streamlit run app/Home.py

## Install (once) and run the test suite (CPU only, no downloads): lint, then every test but the
## long fault-injection chains (those are `make reliability`).
test: $(STAMP)
	$(BIN)/python -m ruff check fxcore app tests benchmarks
	$(BIN)/python -m ruff format --check fxcore app tests benchmarks
	$(BIN)/python -m pytest

## The long fault-injection checks: the seeded 20-point SIGKILL chain, the Ctrl-C chain and the
## full/read-only-disk matrix during training; prints a table, exits non-zero on any failure.
reliability: $(STAMP)
	$(BIN)/python benchmarks/reliability.py

demo: $(STAMP)
	$(BIN)/python -m fxcore demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## Reproduce docs/findings.md: a vgg-mini pair on CelebA (CELEBA=folder in the official layout),
## the demo (incl. the MNIST MLP), the comparison and every figure, into checkpoints/ and study/.
## The pair gets a control run (Smiling again, own batch order): every comparison is read against it.
## Interrupted? Run it again: training resumes from the last complete epoch.
CELEBA ?= ../shared/data/celeba-10k
study: $(STAMP)
	$(BIN)/python -m fxcore train --dataset celeba --data-root $(CELEBA) --attributes Smiling Male \
	    --model vgg-mini --image-size 64 --epochs 6 --batch-size 32 --pretrained no --seed 0 \
	    --controls 1 --augment off --out checkpoints/celeba-vgg-mini --resume --no-progress
	$(BIN)/python -m fxcore demo
	mkdir -p study
	$(BIN)/python -m fxcore compare celeba-vgg-mini --probe 256 --json > study/celeba_compare.json
	$(BIN)/python -m fxcore figures celeba-vgg-mini --probe 256 --out study/figures/celeba
	$(BIN)/python -m fxcore figures mnist-fcnn3 --out study/figures/mnist

## Build the Docker image on a local Debian base and run the app, train and train-multi in it
## (root, Debian 12, no registry, CPU only; 4-12 minutes, ~3 GB download, ~15 GB disk). docs/deploy.md.
docker-check: $(STAMP)
	PY=$(abspath $(BIN))/python deploy/docker-check.sh

lint: $(STAMP)
	$(BIN)/python -m ruff check fxcore app tests benchmarks
	$(BIN)/python -m ruff format --check fxcore app tests benchmarks

format: $(STAMP)
	$(BIN)/python -m ruff format fxcore app tests benchmarks
	$(BIN)/python -m ruff check --fix fxcore app tests benchmarks

clean-venv:
	rm -rf $(VENV)
