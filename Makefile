# Every target creates (once) and reuses the local virtualenv in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test portable reliability lint format demo bench study docker-check clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Install (once) and start the app at once with the shipped experiments; the demo experiments
## (SynthFaces, MNIST) train meanwhile in the background, niced and on one thread, one at a time,
## and appear in the app as they train (log: checkpoints/.demo-training.log). Stopping the app
## stops that trainer too; complete epochs stay and the next `make run` resumes it. Offline.
run: $(STAMP)
	@mkdir -p checkpoints
	@OMP_NUM_THREADS=1 nice -n 10 $(BIN)/python -m fxcore demo --if-missing \
	    > checkpoints/.demo-training.log 2>&1 & trainer=$$!; \
	trap 'kill $$trainer 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python -m streamlit run app/Home.py

## Install (once) and run the test suite (CPU only, no downloads): lint, then every test but the
## long fault-injection chains (those are `make reliability`).
test: $(STAMP)
	$(BIN)/python -m ruff check fxcore app tests benchmarks
	$(BIN)/python -m ruff format --check fxcore app tests benchmarks
	$(BIN)/python -m pytest

## The science tests on the most basic CPU code path (no SIMD beyond SSE4.1 in oneDNN, ATen's
## scalar kernels): another processor trains other models, and these tests must hold on any of them.
SCIENCE_TESTS := tests/test_attribution.py tests/test_attribution_methods.py tests/test_synthfaces_recovery.py \
	tests/test_similarity.py \
	tests/test_uncertainty.py tests/test_trust.py tests/test_controls.py
portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 $(BIN)/python -m pytest -p no:cacheprovider $(SCIENCE_TESTS)

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
