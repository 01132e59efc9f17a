# Every target is listed by `make help` from its `## ` comment.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python

DATASET   ?= synthetic
DATA      ?=
SEEDS     ?=
BACKBONES ?=
RESULTS   ?= results
SWEEP     ?= all_backbones
ENSEMBLE  ?= 3
ARGS      ?=
TEST_JOBS ?= 2
JOBS      ?= 1
DAYS      ?=

.DEFAULT_GOAL := help
.PHONY: help install test lint run sweep report bench cache clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## create .venv and install the project with its dev extras
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'

test: ## run the test suite (ruff, then pytest on TEST_JOBS worker processes)
	$(VENV)/bin/ruff check benchmark backbones hydra_plugins tests
	$(PY) -m pytest -n $(TEST_JOBS)

lint: ## ruff check (the lint half of make test)
	$(VENV)/bin/ruff check benchmark backbones hydra_plugins tests

run: ## one run: make run ARGS="backbone=densenet121"
	$(PY) -m benchmark $(ARGS)

sweep: ## every backbone x seeds (0,1,2) on DATASET, resumable, JOBS cells at once; ends with the leaderboard
	$(PY) -m benchmark --multirun +sweep=$(SWEEP) dataset=$(DATASET) 'results_dir=$(RESULTS)' \
	    $(if $(filter-out 1,$(JOBS)),hydra/launcher=workers hydra.launcher.n_jobs=$(JOBS)) \
	    report.ensemble_k=$(ENSEMBLE) $(if $(DATA),'dataset.path=$(DATA)') \
	    $(if $(BACKBONES),backbone=$(BACKBONES)) $(if $(SEEDS),seed=$(SEEDS)) $(ARGS)

report: ## rebuild the leaderboard (.md, .csv), figures and the top-ENSEMBLE ensemble from results/runs; ARGS="primary_metric=accuracy"
	$(PY) -m benchmark.report 'results_dir=$(RESULTS)' ensemble_k=$(ENSEMBLE) $(ARGS)

bench: ## measure extraction speed, latency and the feature cache's speed-up (targets in conf/bench.yaml)
	$(PY) -m benchmark.bench 'out_dir=$(RESULTS)'

cache: ## what cache/ holds; make cache DAYS=30 [ARGS=dry_run=true] removes (lists) what no run used for 30 days
	$(PY) -m benchmark.cache $(if $(DAYS),unused_days=$(DAYS)) $(ARGS)

clean: ## remove caches and generated results (keeps results/README.md)
	rm -rf cache outputs multirun .pytest_cache .ruff_cache
	find results -mindepth 1 ! -name README.md -exec rm -rf {} +
