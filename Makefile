# ALPR on Kubeflow — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
PYTEST_ARGS ?=

export DVC_NO_ANALYTICS := 1
export GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT := false
export NO_GCE_CHECK := true

MODEL ?= latest
PORT ?= 8080

.PHONY: help install run compile test test-fast tensorboard serve bench-serve clean clean-workspace

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install everything (torch CPU, mmcv built from source, mmdet, kfp, kserve, dvc…); safe to re-run
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel "setuptools>=77.0.3,<81"
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0 "numpy<2.3"
	# mmcv 2.1.0 has no wheel for torch 2.13: build it with its ops against the installed torch (~9 min once;
	# pip caches the wheel). --no-build-isolation: the build must see torch and a setuptools that still has pkg_resources.
	$(PY) -c "import mmcv.ops" 2>/dev/null || MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) install -c $(CONSTRAINTS) --no-build-isolation mmcv==2.1.0
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test]"
	# mmcv pulls opencv-python, whose cv2 fails to import here; the headless build must own cv2.
	$(PIP) install -q --force-reinstall --no-deps -c $(CONSTRAINTS) opencv-python-headless
	$(PY) -c "import cv2, mmcv.ops, mmdet, kfp, kserve, dvc; print('install ok: mmdet', mmdet.__version__, 'kfp', kfp.__version__)"

run: ## Run the whole pipeline locally (kfp.local, embedded defaults in ./.alpr)
	$(PY) pipeline.py --run

compile: ## Compile the pipeline to alpr_pipeline.yaml (KFP IR)
	$(PY) pipeline.py --compile --output alpr_pipeline.yaml

test: ## Run the test suite (the command CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: ## Run the tests that train nothing
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

tensorboard: ## Open TensorBoard on the local workspace's training logs (http://localhost:6006)
	$(VENV)/bin/tensorboard --logdir .alpr/storage/tensorboard --port 6006

serve: ## Serve a model with KServe on http://localhost:$(PORT) (MODEL=latest|dir|gs://…; V1 + V2 REST, /metrics)
	$(PY) -m alpr.serving --model $(MODEL) --http-port $(PORT)

bench-serve: ## Benchmark the model server on 127.0.0.1: latency p50/p95/p99, req/s at 1-8 clients, peak RSS
	$(PY) benchmarks/bench_serve.py --model $(MODEL) --json bench_serve.json

clean: ## Remove caches and build outputs (keeps .venv and the workspace)
	rm -rf .pytest_cache build dist *.egg-info alpr_pipeline.yaml
	find . -name __pycache__ -prune -exec rm -rf {} +

clean-workspace: ## Delete the local workspace ./.alpr (metadata, dataset repo, models)
	rm -rf .alpr
