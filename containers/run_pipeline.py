"""Run the whole pipeline locally with every task in the components image (kfp.local.DockerRunner).

    DOCKER_HOST=unix:///run/alpr-podman.sock ALPR_COMPONENT_IMAGE=ghcr.io/alpr-kubeflow/alpr-components:src-… \\
        python containers/run_pipeline.py --workspace /tmp/ws --bootstrap-images 24 --epochs 2 …

The same flags as ``python pipeline.py --run`` (pipelines/run.py); what differs is the runner: each task runs in a
container of ``ALPR_COMPONENT_IMAGE`` (compiled into the components when they are defined, so it is set before
this process starts) through a Docker API -- Docker's, or ``podman system service``'s (docs/containers.md). The
workspace is bootstrapped here, on the host, then mounted into every task at the same path
(:mod:`alpr.kubeflow.local_runner`); the tasks run as the image's user (uid 10001), so the workspace must be
writable by it (``--chown`` makes it so when this runs as root). Prints the run's summary as JSON and exits 0
when the pipeline succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the checkout's pipelines/ package

from alpr import logs  # noqa: E402
from alpr.data.bootstrap import bootstrap  # noqa: E402
from alpr.defaults import BOOTSTRAP_VERSION  # noqa: E402
from alpr.kubeflow import local_runner  # noqa: E402
from alpr.settings import load_settings  # noqa: E402
from pipelines import run as pipeline_run  # noqa: E402

#: The uid:gid of the project's images (Dockerfile, runtime stage).
IMAGE_USER = "10001:10001"


def main(argv: list[str] | None = None) -> int:
    """Bootstrap the workspace if needed, run the pipeline with the docker runner, print the summary."""
    parser = pipeline_run.build_parser("run")
    parser.add_argument(
        "--chown", action="store_true", help=f"make the workspace owned by {IMAGE_USER} first (needs root)"
    )
    args = parser.parse_args(argv)
    if not os.environ.get("ALPR_COMPONENT_IMAGE"):
        parser.error("set ALPR_COMPONENT_IMAGE to the components image to run the tasks in (make images prints it)")
    logs.setup()
    settings = load_settings(workspace=args.workspace)
    settings.export()
    if args.annotation_version == BOOTSTRAP_VERSION and bootstrap(settings, args.bootstrap_images):
        print(f"bootstrapped annotation version {BOOTSTRAP_VERSION} ({args.bootstrap_images} synthetic images)")
    pipeline_root = Path(settings.workspace) / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    if args.chown:
        for path in local_runner.local_paths(settings):
            subprocess.run(["chown", "-R", IMAGE_USER, str(path)], check=True)
    summary = pipeline_run.execute_local(settings, pipeline_run.pipeline_arguments(args), pipeline_root, "docker")
    print("=== ALPR pipeline finished (every task in " + os.environ["ALPR_COMPONENT_IMAGE"] + ") ===")
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
