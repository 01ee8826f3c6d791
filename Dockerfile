# syntax=docker/dockerfile:1
# ALPR images, one Dockerfile, two targets (`make images` builds both, with docker or podman; docs/containers.md):
#
#   components  the `alpr` library with torch (CPU), mmcv 2.1.0 built with its ops, mmdet 3.3.0, kfp, kserve, DVC;
#               every KFP component of the pipeline runs in it (components/__init__.py COMPONENT_IMAGE), and so do
#               the TensorBoard Deployment and the dataset bootstrap Job of manifests/ and charts/alpr/
#   serving     the KServe model server `python -m alpr.serving` on ONNX Runtime (kserve, onnxruntime, OpenCV
#               headless, NumPy; no torch, mmcv or mmdet), port 8080, with KServe's arguments (a ServingRuntime's
#               --model_name=NAME --model_dir=/mnt/models --http_port=8080) or, without --model/--model_dir, the
#               model in $STORAGE_URI (`podman run -e STORAGE_URI=/models`); the model needs its ONNX export
#
#   docker build --target components -t ghcr.io/alpr-kubeflow/alpr-components:0.1.0-python3.11 .
#   docker build --target serving    -t ghcr.io/alpr-kubeflow/alpr-serving:0.1.0-python3.11 .
#
# Versions are pinned: the base image by tag (pass PYTHON_IMAGE=python:3.11.9-slim-bookworm@sha256:… to pin the
# digest), Python packages by requirements/constraints.txt plus the versions in pyproject.toml. A GPU build of the
# components image: TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 and a CUDA devel base for the build
# stage (BUILD_IMAGE), so that mmcv compiles its CUDA ops. No credentials are baked in: the cluster mounts them
# (Secrets, see manifests/ and README "Run on Kubeflow").
#
# Optional inputs, both absent in a plain `docker build`:
#   build/wheels/*.whl  a wheelhouse (`make wheelhouse`: the CPU torch wheel and the mmcv wheel `make install`
#                       built); the build installs torch and mmcv from it instead of downloading torch and
#                       compiling mmcv (about ten minutes).
#   secret pipcert      a certificate bundle for pip (`--secret id=pipcert,src=FILE`, `make images` passes the one
#                       pip on the host trusts). It is mounted for the RUN steps that use pip, never copied.
# Without a registry, `make base-image` builds a Debian bookworm + python3 base and PYTHON_IMAGE names it.

ARG PYTHON_IMAGE=python:3.11.9-slim-bookworm
ARG BUILD_IMAGE=${PYTHON_IMAGE}

# ------------------------------------------------------------------------------------------------------ wheelhouse
# The wheelhouse as a stage (an empty one when build/wheels has no wheels), bind-mounted by the pip steps below.
FROM ${BUILD_IMAGE} AS wheelhouse
COPY requirements/constraints.txt build/wheels/*.whl /wheels/

# ---------------------------------------------------------------------------------------------------- requirements
# The runtime requirements of pyproject.toml as a requirements file: the dependency layer below is then rebuilt
# when they change, not when the version, the test extra or the tool settings in pyproject.toml do.
# The serving image's subset: the dependencies named in [tool.alpr] serving-packages, with their specifiers.
FROM ${BUILD_IMAGE} AS requirements
COPY pyproject.toml /src/pyproject.toml
COPY containers/requirements.py /src/requirements.py
RUN python /src/requirements.py /src/pyproject.toml > /requirements.txt \
 && python /src/requirements.py --serving /src/pyproject.toml > /serving-requirements.txt

# ---------------------------------------------------------------------------------------------------------- build
FROM ${BUILD_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG MAX_JOBS=4
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_FIND_LINKS=/wheels \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Compilers for mmcv's C++ ops when the wheelhouse has no mmcv wheel (and for sdists without a wheel).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Every pip step: the wheelhouse at /wheels (PIP_FIND_LINKS) and, when given, the certificate bundle as a secret.
COPY requirements/constraints.txt requirements/constraints.txt
RUN --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && pip install -c requirements/constraints.txt "pip==26.3" "wheel==0.45.1" "setuptools>=77.0.3,<81"
# torch first (CPU wheels: the wheelhouse's, else the PyTorch CPU index), then mmcv 2.1.0 with its ops against that
# torch: the wheelhouse's wheel, else built from source; mmcv's build imports torch and pkg_resources, hence
# --no-build-isolation (the same steps as `make install`). Separate layers on purpose: the mmcv build takes about
# ten minutes and stays cached while torch or the tooling layer is unchanged.
# hadolint ignore=DL3059
RUN --mount=type=bind,from=wheelhouse,source=/wheels,target=/wheels \
    --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && extra="${TORCH_INDEX_URL}" \
 && if [ -n "$(find /wheels -name 'torch-2.13.0*.whl')" ]; then extra=""; fi \
 && pip install -c requirements/constraints.txt ${extra:+--extra-index-url "$extra"} torch==2.13.0 "numpy<2.3"
# hadolint ignore=DL3059
RUN --mount=type=bind,from=wheelhouse,source=/wheels,target=/wheels \
    --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS} pip install -c requirements/constraints.txt --no-build-isolation mmcv==2.1.0

# The dependencies (cached while only the code changes); mmcv pulls opencv-python, whose cv2 needs libGL: the
# headless build must own cv2, so opencv-python goes and opencv-python-headless is reinstalled over its files.
COPY --from=requirements /requirements.txt requirements/runtime.txt
RUN --mount=type=bind,from=wheelhouse,source=/wheels,target=/wheels \
    --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && pip install -c requirements/constraints.txt -r requirements/runtime.txt \
 && pip uninstall -y opencv-python \
 && pip install --force-reinstall --no-deps -c requirements/constraints.txt opencv-python-headless

# The project, installed editable (no dependencies left to fetch) so that alpr/model/training.py finds configs/
# next to the package -- into its own prefix, /opt/project: the runtime stage lays it over /opt/venv in a small
# layer of its own, so a change of the code leaves the 2 GB layer of the environment as it was (cached, and not
# pulled again by the cluster's nodes).
COPY pyproject.toml README.md ./
COPY alpr alpr
COPY components components
COPY dataset_tools dataset_tools
COPY configs configs
RUN pip install --no-deps --no-build-isolation --prefix /opt/project -c requirements/constraints.txt -e . \
 && python -c "import site; site.addsitedir('/opt/project/lib/python3.11/site-packages'); import cv2, mmcv.ops, mmdet, kfp, kserve, dvc, alpr; print('image ok: mmdet', mmdet.__version__)"

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
COPY --from=build /opt/project/ /opt/venv/
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
# VCS_REF: the git revision the image is built from (`make images` passes `git describe --always --dirty`).
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="alpr-components" \
      org.opencontainers.image.description="ALPR pipeline components: alpr library, torch CPU, mmcv 2.1 ops, mmdet 3.3" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/alpr-kubeflow/alpr-kubeflow" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0"
# KFP sets the command of each task; a bare `docker run` shows the library's version.
CMD ["python", "-c", "import alpr, mmdet, kfp; print('alpr', alpr.__version__, 'mmdet', mmdet.__version__, 'kfp', kfp.__version__)"]

# ----------------------------------------------------------------------------------------------------- serving-build
# The model server's environment alone: [tool.alpr] serving-packages of pyproject.toml (kserve, ONNX Runtime, OpenCV
# headless, NumPy, the metadata store's and the bucket's clients) and the alpr package -- no torch, mmcv or mmdet. It
# serves a model directory's ONNX export (model.onnx + model.json, data files only); config.py is never executed.
FROM ${BUILD_IMAGE} AS serving-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements/constraints.txt requirements/constraints.txt
COPY --from=requirements /serving-requirements.txt requirements/serving.txt
RUN --mount=type=secret,id=pipcert \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && pip install -c requirements/constraints.txt "pip==26.3" "wheel==0.45.1" "setuptools>=77.0.3,<81" \
 && pip install -c requirements/constraints.txt -r requirements/serving.txt
COPY pyproject.toml README.md ./
COPY alpr alpr
# The installers go once the project is in (25 MB the server never runs; the editable install needs none of them).
RUN pip install --no-deps --no-build-isolation --prefix /opt/project -c requirements/constraints.txt -e . \
 && pip uninstall -y -q setuptools wheel pip \
 && python -c "import site; site.addsitedir('/opt/project/lib/python3.11/site-packages'); import importlib.util as u; import cv2, onnxruntime, kserve, alpr.serving.server; heavy = [m for m in ('torch', 'mmcv', 'mmdet', 'mmengine') if u.find_spec(m)]; assert not heavy, heavy; print('serving image ok: onnxruntime', onnxruntime.__version__, 'cv2', cv2.__version__)"

# -------------------------------------------------------------------------------------------------------- serving
FROM ${PYTHON_IMAGE} AS serving
# Only the base's Python and certificates: ONNX Runtime and OpenCV's wheels carry their own libraries.
RUN groupadd --gid 10001 alpr \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/alpr --shell /usr/sbin/nologin alpr
COPY --from=serving-build /opt/venv /opt/venv
COPY --from=serving-build /opt/project/ /opt/venv/
COPY --from=serving-build --chown=root:root /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/alpr \
    ALPR_WORKSPACE=/home/alpr/.alpr
WORKDIR /app
USER 10001:10001
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="alpr-serving" \
      org.opencontainers.image.description="ALPR KServe model server on ONNX Runtime (model 'alpr', V1 + V2 REST on port 8080)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://github.com/alpr-kubeflow/alpr-kubeflow" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The model to serve when the arguments name none (no --model, no --model_dir): a model folder, a gs:// URI or
# `latest` (the newest selected model in the metadata store). It must hold an ONNX export (Evaluate writes one;
# `alpr export-onnx MODEL_DIR` adds one to an older model, in the components image or a `make install` venv).
ENV STORAGE_URI=latest
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=4)"]
# Arguments are the server's (python -m alpr.serving --help): a ServingRuntime's or InferenceService's args
# replace CMD; --model > --model_dir > $STORAGE_URI picks the model.
ENTRYPOINT ["python", "-m", "alpr.serving"]
CMD ["--http_port=8080"]
