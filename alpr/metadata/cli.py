"""The metadata store's command line, ``alpr db`` (also ``python -m alpr.metadata``).

::

    alpr db upgrade [--revision head] [--url URL]   # migrate the schema (the previous release's database too)
    alpr db init [--url URL]                        # the same as upgrade to head (idempotent)
    alpr db current [--url URL]                     # the revision the database is at
    alpr db check [--url URL]                       # does the database match schema.py? (exit 1 if not)
    alpr db downgrade --revision REV [--url URL]    # undo migrations down to REV ("base" drops every table)
    alpr db history                                 # the revisions, oldest first
    alpr db revision -m MESSAGE [--autogenerate --url URL]   # write the next migration (developers)
    alpr db show-url [--url URL]                    # print the URL with its password hidden

The URL defaults to ``$ALPR_DB_URL``; the password comes from ``$ALPR_DB_PASSWORD`` (never from the command line,
never printed). Exit status: 0 done, 1 error (the message on stderr) or differences found (``check``), 2 no URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alpr.metadata import migrate
from alpr.metadata.errors import MetadataError
from alpr.metadata.store import PASSWORD_ENV, MetadataStore

__all__ = ["COMMANDS", "URL_ENV", "Command", "main"]

#: Environment variable holding the default store URL of the CLI.
URL_ENV = "ALPR_DB_URL"


def _result_line(result: migrate.MigrationResult, store: MetadataStore) -> str:
    before = result.before or ("previous release (no alembic_version)" if result.adopted else "empty")
    if not result.changed:
        return f"metadata schema at {result.after or 'base'}, nothing to do, at {store.url_for_display}"
    return f"metadata schema migrated {before} -> {result.after or 'base'} at {store.url_for_display}"


def _init(store: MetadataStore, args: argparse.Namespace) -> tuple[int, str]:
    store.create_schema()
    return 0, f"metadata schema ready at {store.url_for_display}"


def _upgrade(store: MetadataStore, args: argparse.Namespace) -> tuple[int, str]:
    return 0, _result_line(store.upgrade_schema(args.revision), store)


def _downgrade(store: MetadataStore, args: argparse.Namespace) -> tuple[int, str]:
    return 0, _result_line(store.downgrade_schema(args.revision), store)


def _current(store: MetadataStore, args: argparse.Namespace) -> tuple[int, str]:
    revision = store.schema_revision()
    if revision is None:
        return 0, "none (no alembic_version: an empty database, or one of the previous release: run alpr db upgrade)"
    return 0, f"{revision}{' (head)' if revision == migrate.head() else ''}"


def _check(store: MetadataStore, args: argparse.Namespace) -> tuple[int, str]:
    found = store.schema_differences()
    if not found:
        return 0, f"metadata schema matches schema.py at {store.url_for_display}"
    lines = [f"{len(found)} difference(s) between the database and schema.py (alpr db upgrade, or a migration):"]
    return 1, "\n".join(lines + [f"  {d!r}" for d in found])


def _history(args: argparse.Namespace) -> tuple[int, str]:
    return 0, "\n".join(
        f"{r.down_revision or 'base'} -> {r.id}{' (head)' if r.is_head else ''}: {r.message}" for r in migrate.history()
    )


def _revision(args: argparse.Namespace) -> tuple[int, str]:
    if not args.autogenerate:
        return 0, f"wrote {migrate.new_revision(args.message)}"
    if not args.url:
        raise _NoUrl
    store = MetadataStore(args.url)
    try:
        with store.engine.connect() as conn:
            if migrate.current(conn) != migrate.head():
                raise MetadataError("autogenerate needs a database at head: run alpr db upgrade on it first")
            return 0, f"wrote {migrate.new_revision(args.message, autogenerate=True, connection=conn)}"
    finally:
        store.dispose()


class _NoUrl(Exception):
    pass


@dataclass(frozen=True)
class Command:
    """An ``alpr db`` subcommand: its help line, and its function (``on_store``: run on the store at ``--url``,
    else on the parsed arguments alone); each returns ``(exit status, text to print)``."""

    help: str
    run: Callable[..., tuple[int, str]]
    on_store: bool = True


#: The subcommands, in ``--help`` order.
COMMANDS: dict[str, Command] = {
    "upgrade": Command("migrate the schema to a revision (default: the newest)", _upgrade),
    "init": Command("migrate the schema to the newest revision (the same as upgrade; idempotent)", _init),
    "current": Command("print the revision the database is at", _current),
    "check": Command("compare the database with schema.py (exit 1 when they differ)", _check),
    "downgrade": Command("undo migrations down to a revision ('base' drops every table)", _downgrade),
    "history": Command("list the revisions, oldest first", _history, on_store=False),
    "revision": Command("write the next migration file (developers)", _revision, on_store=False),
    "show-url": Command("print the store URL with its password hidden", lambda store, _: (0, store.url_for_display)),
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alpr db", description="The ALPR metadata store and its schema migrations.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        cmd = sub.add_parser(name, help=command.help, description=command.help)
        if name != "history":
            cmd.add_argument(
                "--url",
                default=os.environ.get(URL_ENV, ""),
                help=f"store URL (default: ${URL_ENV}); the password comes from ${PASSWORD_ENV}",
            )
        if name == "upgrade":
            cmd.add_argument("--revision", default="head", help="revision id or 'head' (default: head)")
        elif name == "downgrade":
            cmd.add_argument("--revision", required=True, help="revision id to go back to, or 'base'")
        elif name == "revision":
            cmd.add_argument("-m", "--message", required=True, help="what the migration changes")
            cmd.add_argument(
                "--autogenerate",
                action="store_true",
                help="write the operations that turn the database at --url (at head) into schema.py",
            )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 error or differences, 2 no URL)."""
    args = _parse_args(argv)
    command = COMMANDS[args.command]
    no_url = f"error: no store URL: pass --url or set {URL_ENV}"
    if not command.on_store:
        try:
            status, text = command.run(args)
        except _NoUrl:
            print(no_url, file=sys.stderr)
            return 2
        except (MetadataError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(text)
        return status
    if not args.url:
        print(no_url, file=sys.stderr)
        return 2
    try:
        store = MetadataStore(args.url)
    except ValueError as exc:  # our own message: it never echoes the URL
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        status, text = command.run(store, args)
    except MetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    print(text)
    return status
