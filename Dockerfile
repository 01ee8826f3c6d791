# syntax=docker/dockerfile:1
# ALPR images, one Dockerfile, two targets (`make images` builds both):
#
#   components  the `alpr` library with torch (CPU), mmcv 2.1.0 built with its ops, mmdet 3.3.0, kfp, kserve, DVC;
#               every KFP component of the pipeline runs in it (components/__init__.py COMPONENT_IMAGE), and so do
#               the TensorBoard Deployment and the dataset bootstrap Job of manifests/ and charts/alpr/
#   serving     the same environment; runs the KServe model server:
#               python -m alpr.serving --model "$STORAGE_URI" --http-port 8080  (extra arguments are appended)
#
#   docker build --target components -t ghcr.io/alpr-kubeflow/alpr-components:0.1.0-python3.11 .
#   docker build --target serving    -t ghcr.io/alpr-kubeflow/alpr-serving:0.1.0-python3.11 .
#
# Versions are pinned: the base image by tag (pass PYTHON_IMAGE=python:3.11.9-slim-bookworm@sha256:… to pin the
# digest), Python packages by requirements/constraints.txt plus the versions in pyproject.toml. A GPU build of the
# components image: TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 and a CUDA devel base for the build
# stage (BUILD_IMAGE), so that mmcv compiles its CUDA ops. No credentials are baked in: the cluster mounts them
# (Secrets, see manifests/ and README "Run on Kubeflow").

ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm
ARG BUILD_IMAGE=${PYTHON_IMAGE}

# ---------------------------------------------------------------------------------------------------------- build
FROM ${BUILD_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG MAX_JOBS=4
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Compilers for mmcv's C++ ops (and pycocotools when no wheel fits).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install -c requirements/constraints.txt "pip==26.3" "wheel==0.45.1" "setuptools>=77.0.3,<81"
# torch first (CPU wheels by default), then mmcv 2.1.0 from source with its ops against that torch: mmcv's build
# imports torch and pkg_resources, hence --no-build-isolation (the same steps as `make install`). Separate layers on
# purpose: the mmcv build takes about ten minutes and stays cached while torch or the tooling layer is unchanged.
# hadolint ignore=DL3059
RUN pip install -c requirements/constraints.txt --extra-index-url "${TORCH_INDEX_URL}" torch==2.13.0 "numpy<2.3"
# hadolint ignore=DL3059
RUN MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS} pip install -c requirements/constraints.txt --no-build-isolation mmcv==2.1.0

# The project: dependencies first (cached while only the code changes), then the code, installed editable so
# that alpr/model/training.py finds configs/ next to the package.
COPY pyproject.toml README.md ./
COPY alpr alpr
COPY components components
COPY dataset_tools dataset_tools
COPY configs configs
RUN pip install -c requirements/constraints.txt --extra-index-url "${TORCH_INDEX_URL}" -e . \
 && pip install --force-reinstall --no-deps -c requirements/constraints.txt opencv-python-headless \
 && python -c "import cv2, mmcv.ops, mmdet, kfp, kserve, dvc, alpr; print('image ok: mmdet', mmdet.__version__)"

# -------------------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# git + ssh: the Record step clones and pushes the dataset repository; libgomp1 / libstdc++6: torch and mmcv's ops.
# /gcs, /minio, /s3: where the KFP v2 launcher puts a task's artifacts; owned by the non-root user so that backends
# that mount no scratch volume there still work.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client libgomp1 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 alpr \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/alpr --shell /usr/sbin/nologin alpr \
 && mkdir -p /gcs /minio /s3 \
 && chown 10001:10001 /gcs /minio /s3

COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/alpr \
    MPLCONFIGDIR=/tmp/matplotlib \
    ALPR_WORKSPACE=/home/alpr/.alpr \
    DVC_NO_ANALYTICS=1 \
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
WORKDIR /app
USER 10001:10001

# ----------------------------------------------------------------------------------------------------- components
FROM runtime AS components
LABEL org.opencontainers.image.title="alpr-components" \
      org.opencontainers.image.description="ALPR pipeline components: alpr library, torch CPU, mmcv 2.1 ops, mmdet 3.3" \
      org.opencontainers.image.licenses="Apache-2.0"
# KFP sets the command of each task; a bare `docker run` shows the library's version.
CMD ["python", "-c", "import alpr, mmdet, kfp; print('alpr', alpr.__version__, 'mmdet', mmdet.__version__, 'kfp', kfp.__version__)"]

# -------------------------------------------------------------------------------------------------------- serving
FROM runtime AS serving
LABEL org.opencontainers.image.title="alpr-serving" \
      org.opencontainers.image.description="ALPR KServe model server (model 'alpr', V1 + V2 REST on port 8080)" \
      org.opencontainers.image.licenses="Apache-2.0"
# The model to serve: a model folder, a gs:// URI or `latest` (the newest selected model in the metadata store).
ENV STORAGE_URI=latest
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=4)"]
ENTRYPOINT ["/bin/sh", "-c", "exec python -m alpr.serving --model \"$STORAGE_URI\" --http-port 8080 \"$@\"", "alpr-serving"]
