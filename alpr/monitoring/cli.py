"""``alpr monitor`` (also ``python -m alpr.monitoring``): the monitor service under uvicorn.

::

    alpr monitor [--host 127.0.0.1] [--port 8090] [--sample-images 0.1] [--retention-days 30]
                 [--model-url http://127.0.0.1:8080] [--model-name alpr] [--db-url URL] [--storage-uri URI]
                 [--max-body-bytes N] [--model-version ID] [--deploy-target TARGET] [--root-path PREFIX]
                 [--log-level info]

It listens on loopback unless told otherwise: on a cluster the Deployment passes ``--host 0.0.0.0`` and the
Service (and the Kubeflow profile's authentication in front of the review page) is the only way in. Behind
Kubeflow's Istio gateway the page is reached under a path prefix that the gateway strips (the VirtualService of
manifests/base/monitor-gateway.yaml: ``/alpr/monitor/`` rewritten to ``/``); ``--root-path /alpr/monitor`` tells
the app (uvicorn's ``root_path``, the ASGI scope's ``root_path``) so that the page's links keep the prefix. The metadata
store and the blob storage default to the workspace's (:class:`alpr.settings.Settings`: ``$ALPR_DB_URL``,
``$ALPR_STORAGE_URI``); the schema is migrated to the newest revision at start-up (as ``alpr db init``).
Exit status: 0 stopped, 1 the store cannot be opened, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from alpr import logs
from alpr.metadata import MetadataError
from alpr.monitoring.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, MonitorConfig, create_app
from alpr.settings import load_settings

__all__ = ["MODEL_URL_ENV", "build_config", "main"]

#: Environment variable with the model server's base URL (the default of ``--model-url``).
MODEL_URL_ENV = "ALPR_MODEL_URL"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _root_path(text: str) -> str:
    value = text.rstrip("/")
    if value and (not value.startswith("/") or "?" in value or "#" in value or " " in value):
        raise argparse.ArgumentTypeError(f'must be a URL path starting with "/" (or ""), got {text!r}')
    return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="alpr monitor",
        description="The monitor: receives KServe's logged predictions (CloudEvents), stores them, exports "
        "Prometheus metrics with drift against the served model's baseline, and serves the review page.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=_positive_int, default=DEFAULT_PORT, help="port (default %(default)s)")
    parser.add_argument(
        "--sample-images",
        type=_fraction,
        default=0.1,
        help="fraction of images kept in blob storage for review, decided per image SHA-256 (default %(default)s)",
    )
    parser.add_argument(
        "--retention-days",
        type=_positive_int,
        default=30,
        help="days a kept image stays before it is deleted: plate numbers are personal data (default %(default)s)",
    )
    parser.add_argument(
        "--model-url",
        default=os.environ.get(MODEL_URL_ENV, "http://127.0.0.1:8080"),
        help=f"the model server's base URL, for the review page's upload (default ${MODEL_URL_ENV} or %(default)s)",
    )
    parser.add_argument("--model-name", default="alpr", help="the served model's name (default %(default)s)")
    parser.add_argument("--db-url", default=None, help="metadata store URL (default $ALPR_DB_URL or the workspace's)")
    parser.add_argument(
        "--storage-uri",
        default=None,
        help="blob storage for kept images (default $ALPR_STORAGE_URI or the workspace's)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest event body accepted, bytes (default %(default)s)",
    )
    parser.add_argument(
        "--model-version",
        default=None,
        help="the served model's metadata-store id (default: the model the Deploy step last deployed at the target)",
    )
    parser.add_argument(
        "--deploy-target",
        default=None,
        help='the Deploy target the events come from ("local", "<namespace>/<name>"; default: from the events)',
    )
    parser.add_argument(
        "--root-path",
        type=_root_path,
        default="",
        help='the path prefix a proxy serves the app under and strips, e.g. "/alpr/monitor" behind Kubeflow\'s '
        "gateway; the review page's links keep it (default: none)",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> MonitorConfig:
    """The :class:`MonitorConfig` of parsed arguments, the store and storage defaulting to the workspace's."""
    settings = load_settings()
    return MonitorConfig(
        db_url=args.db_url or settings.db_url,
        storage_uri=args.storage_uri or settings.storage_uri,
        sample_images=args.sample_images,
        retention_days=args.retention_days,
        max_body_bytes=args.max_body_bytes,
        model_url=args.model_url,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        model_version=args.model_version,
        deploy_target=args.deploy_target,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the monitor until interrupted; return the exit status (see the module docstring)."""
    import uvicorn

    args = _parse_args(argv)
    logs.setup(getattr(logging, args.log_level.upper()))
    try:
        config = build_config(args)
        app = create_app(config)
    except (MetadataError, ValueError) as exc:
        print(f"alpr monitor: {exc}", file=sys.stderr)
        return 1
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=args.log_level,
        proxy_headers=False,
        root_path=args.root_path,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
