"""``python -m dataset_tools list`` and ``python -m dataset_tools show NAME``: the dataset versions recorded in the
metadata store (:class:`alpr.metadata.MetadataStore`), as aligned text tables (``tabulate``) or JSON.

This module registers two sub-commands (``list`` and ``show``); both dispatch through :func:`run`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from alpr.spec import SPLITS
from dataset_tools.register import add_backend_options, fail, secrets_of, settings_from_args

#: Length of the abbreviated git revisions in tables.
SHORT_REV = 10


# ------------------------------------------------------------------------------------------ parsers


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``list`` and ``show`` sub-commands on ``subparsers``; return the ``list`` parser.

    Both parsers get ``run`` as their default, so the caller's ``set_defaults(run=run)`` on the returned one is
    harmless; :func:`run` tells them apart by ``args.versions_command``.
    """
    list_parser = subparsers.add_parser(
        "list",
        help="list the annotation versions (and, with --training, the training versions)",
        description="List the annotation versions recorded in the metadata store, oldest first: name, images, "
        "plates, creation time (UTC) and git revision. Exit status: 0 ok, 1 the store failed.",
    )
    list_parser.add_argument(
        "--training",
        action="store_true",
        help="also list the training versions, with their annotation version and images per split",
    )
    _add_common(list_parser)
    list_parser.set_defaults(run=run, versions_command="list")

    show_parser = subparsers.add_parser(
        "show",
        help="show one annotation or training version",
        description="Show annotation version NAME (description, git revision, images, instances per class, its "
        "training versions) or training version NAME (annotation version, seed, fractions, images "
        "per split, instances per class and split). Exit status: 0 ok, 1 no such version or the "
        "store failed.",
    )
    show_parser.add_argument("name", metavar="NAME", help="an annotation version or training version name")
    _add_common(show_parser)
    show_parser.set_defaults(run=run, versions_command="show")
    return list_parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text tables")
    add_backend_options(parser, dataset=False)


# ------------------------------------------------------------------------------------------ data


def _plates(class_counts: dict) -> int:
    from alpr import spec

    return sum(int(class_counts.get(label, 0)) for label in spec.PLATE_LABELS)


def _split_images(tv: dict) -> dict[str, int]:
    """Images per split of a training version row (from its recorded counts)."""
    splits = (tv.get("counts") or {}).get("splits") or {}
    return {s: int((splits.get(s) or {}).get("images", 0)) for s in SPLITS}


def _annotation_summary(av: dict) -> dict:
    return {
        "name": av["name"],
        "images": av["image_count"],
        "plates": _plates(av["class_counts"] or {}),
        "created": av["created_at"],
        "git_rev": av["git_rev"],
    }


def _training_summary(tv: dict) -> dict:
    return {
        "name": tv["name"],
        "annotation_version": tv["annotation_version"],
        "seed": tv["seed"],
        "fractions": list(tv["fractions"]),
        "images": _split_images(tv),
        "created": tv["created_at"],
        "git_rev": tv["git_rev"],
    }


def collect_list(store: Any, training: bool) -> dict:
    """Return ``{"annotation_versions": [...]}`` (plus ``"training_versions"`` when ``training``).

    Raises:
        alpr.metadata.MetadataError: the store cannot be read.
    """
    out: dict[str, Any] = {"annotation_versions": [_annotation_summary(a) for a in store.list_annotation_versions()]}
    if training:
        out["training_versions"] = [_training_summary(t) for t in store.list_training_versions()]
    return out


def collect_show(store: Any, name: str) -> dict | None:
    """Return the details of annotation or training version ``name`` (``"kind"`` says which), or None.

    Raises:
        alpr.metadata.MetadataError: the store cannot be read.
    """
    from alpr import spec

    av = store.get_annotation_version(name)
    if av is not None:
        counts = av["class_counts"] or {}
        return {
            "kind": "annotation_version",
            **_annotation_summary(av),
            "description": av["description"],
            "class_counts": {c: int(counts.get(c, 0)) for c in spec.CLASSES},
            "training_versions": [_training_summary(t) for t in store.list_training_versions(name)],
        }
    tv = store.get_training_version(name)
    if tv is None:
        return None
    per_split: dict[str, int] = dict.fromkeys(SPLITS, 0)
    for split in store.training_splits(name).values():
        per_split[split] += 1
    split_counts = (tv["counts"] or {}).get("splits") or {}
    classes = {
        c: {s: int(((split_counts.get(s) or {}).get("classes") or {}).get(c, 0)) for s in SPLITS} for c in spec.CLASSES
    }
    return {
        "kind": "training_version",
        **_training_summary(tv),
        "images": per_split,
        "params_hash": tv["params_hash"],
        "class_counts": classes,
    }


# ------------------------------------------------------------------------------------------ text


def _short(rev: str) -> str:
    return (rev or "")[:SHORT_REV]


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else str(value)


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    """An aligned table; integer columns right-aligned, text never parsed as numbers (a name stays verbatim)."""
    from tabulate import tabulate

    width = max((len(r) for r in rows), default=len(headers))
    align = ["right" if rows and all(isinstance(r[i], int) for r in rows) else "left" for i in range(width)]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True, colalign=align)


def _fields(rows: list[list[Any]]) -> str:
    """Aligned ``field  value`` lines."""
    from tabulate import tabulate

    return tabulate([[k, str(v)] for k, v in rows], tablefmt="plain", disable_numparse=True)


def _fractions(fr: list[float]) -> str:
    return "/".join(f"{f:g}" for f in fr)


def _training_table(tvs: list[dict], *, with_annotation: bool) -> str:
    headers = [
        "training version",
        *(["annotation version"] if with_annotation else []),
        "seed",
        "fractions",
        *SPLITS,
        "created (UTC)",
        "git rev",
    ]
    rows = [
        [
            t["name"],
            *([t["annotation_version"]] if with_annotation else []),
            t["seed"],
            _fractions(t["fractions"]),
            *(t["images"][s] for s in SPLITS),
            _when(t["created"]),
            _short(t["git_rev"]),
        ]
        for t in tvs
    ]
    return _table(rows, headers)


def format_list(data: dict) -> str:
    """Return ``list``'s text output: one aligned table per kind of version."""
    avs = data["annotation_versions"]
    parts = [
        "no annotation versions"
        if not avs
        else _table(
            [[a["name"], a["images"], a["plates"], _when(a["created"]), _short(a["git_rev"])] for a in avs],
            ["annotation version", "images", "plates", "created (UTC)", "git rev"],
        )
    ]
    if "training_versions" in data:
        tvs = data["training_versions"]
        parts.append("no training versions" if not tvs else _training_table(tvs, with_annotation=True))
    return "\n\n".join(parts)


def format_show(data: dict) -> str:
    """Return ``show``'s text output for the dict of :func:`collect_show`."""
    if data["kind"] == "annotation_version":
        head = [
            ["annotation version", data["name"]],
            ["description", data["description"]],
            ["git revision", data["git_rev"]],
            ["created (UTC)", _when(data["created"])],
            ["images", data["images"]],
            ["plates", data["plates"]],
        ]
        counts = _table([[c, n] for c, n in data["class_counts"].items()], ["class", "instances"])
        tvs = data["training_versions"]
        training = "training versions: none" if not tvs else _training_table(tvs, with_annotation=False)
        return "\n\n".join([_fields(head), counts, training])
    head = [
        ["training version", data["name"]],
        ["annotation version", data["annotation_version"]],
        ["git revision", data["git_rev"]],
        ["created (UTC)", _when(data["created"])],
        ["seed", data["seed"]],
        ["fractions (train/val/test)", _fractions(data["fractions"])],
        *([f"images {s}", data["images"][s]] for s in SPLITS),
    ]
    counts = _table(
        [[c, *(n[s] for s in SPLITS), sum(n.values())] for c, n in data["class_counts"].items()],
        ["class", *SPLITS, "total"],
    )
    return "\n\n".join([_fields(head), counts])


def _to_json(data: Any) -> str:
    return json.dumps(
        data, indent=2, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)
    )


# ------------------------------------------------------------------------------------------ run


def _with_store(args: argparse.Namespace, work: Callable[[Any], int]) -> int:
    """Open the metadata store of the settings and call ``work(store)``; map store failures to exit code 1."""
    import sqlalchemy as sa

    from alpr.metadata import MetadataError, MetadataStore

    prog = f"dataset_tools {args.versions_command}"
    secrets = secrets_of(args.db_url)
    try:
        settings = settings_from_args(args)
        store = MetadataStore(settings.db_url)
    except ValueError as exc:  # invalid settings, malformed or unsupported URL
        return fail(prog, f"invalid settings: {exc}", secrets)
    try:
        # A store nothing was recorded in yet (no tables) is empty, not an error; these commands never write.
        return work(store if _has_schema(store) else _EmptyStore(store.url_for_display))
    except MetadataError as exc:  # its message names the store (password hidden)
        return fail(prog, str(exc), secrets)
    except sa.exc.SQLAlchemyError as exc:
        return fail(prog, f"cannot read the metadata store {store.url_for_display}: {exc}", secrets)
    finally:
        store.dispose()


def _has_schema(store: Any) -> bool:
    """Whether the store's tables exist (read-only check: these commands never create or change tables)."""
    import sqlalchemy as sa

    from alpr.metadata import MetadataConnectionError

    try:
        with store.engine.connect() as conn:
            return sa.inspect(conn).has_table("annotation_versions")
    except sa.exc.OperationalError as exc:
        raise MetadataConnectionError(
            f"cannot connect to the metadata store {store.url_for_display}: {exc.orig}"
        ) from None


class _EmptyStore:
    """Stands in for a store whose tables do not exist yet: no versions of any kind."""

    def __init__(self, url_for_display: str) -> None:
        self.url_for_display = url_for_display

    def list_annotation_versions(self) -> list[dict]:
        """No annotation versions."""
        return []

    def list_training_versions(self, annotation_version: str | None = None) -> list[dict]:
        """No training versions."""
        return []

    def get_annotation_version(self, name: str) -> None:
        """No annotation version of any name."""
        return None

    def get_training_version(self, name: str) -> None:
        """No training version of any name."""
        return None


def _list(args: argparse.Namespace, store: Any) -> int:
    data = collect_list(store, args.training)
    print(_to_json(data) if args.json else format_list(data))
    return 0


def _show(args: argparse.Namespace, store: Any) -> int:
    data = collect_show(store, args.name)
    if data is None:
        return fail(
            "dataset_tools show",
            f"no annotation version or training version named {args.name!r} in the metadata store "
            f"{store.url_for_display}; 'python -m dataset_tools list --training' lists them",
        )
    print(_to_json(data) if args.json else format_show(data))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``list`` or ``show`` (by ``args.versions_command``); return 0, or 1 after printing the error."""
    action = _show if args.versions_command == "show" else _list
    return _with_store(args, lambda store: action(args, store))
