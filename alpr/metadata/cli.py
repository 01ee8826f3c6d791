"""The metadata store's command line, ``alpr db`` (also ``python -m alpr.metadata``).

::

    alpr db init [--url URL]       # create the tables (idempotent); print the URL with its password hidden
    alpr db show-url [--url URL]   # print the URL with its password hidden

The URL defaults to ``$ALPR_DB_URL``; the password comes from ``$ALPR_DB_PASSWORD`` (never from the command line,
never printed). Exit status: 0 done, 1 error (the message on stderr), 2 no URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from alpr.metadata.errors import MetadataError
from alpr.metadata.store import PASSWORD_ENV, MetadataStore

__all__ = ["URL_ENV", "init", "main", "show_url"]

#: Environment variable holding the default store URL of the CLI.
URL_ENV = "ALPR_DB_URL"


def init(store: MetadataStore) -> str:
    """Create the tables of ``store`` that do not exist yet; return the line to print (the URL, password hidden).

    Raises:
        MetadataConnectionError: the database cannot be reached.
    """
    store.create_schema()
    return f"metadata schema ready at {store.url_for_display}"


def show_url(store: MetadataStore) -> str:
    """Return the URL of ``store`` with its password hidden."""
    return store.url_for_display


#: The subcommands: name -> (what it does, for --help; the function run on the store).
COMMANDS: dict[str, tuple[str, Callable[[MetadataStore], str]]] = {
    "init": ("create the tables (idempotent)", init),
    "show-url": ("print the store URL with its password hidden", show_url),
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alpr db", description="The ALPR metadata store.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument(
            "--url",
            default=os.environ.get(URL_ENV, ""),
            help=f"store URL (default: ${URL_ENV}); the password comes from ${PASSWORD_ENV}",
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI (``init`` / ``show-url``); return the exit status (0 ok, 1 error, 2 no URL)."""
    args = _parse_args(argv)
    if not args.url:
        print(f"error: no store URL: pass --url or set {URL_ENV}", file=sys.stderr)
        return 2
    try:
        store = MetadataStore(args.url)
    except ValueError as exc:  # our own message: it never echoes the URL
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(COMMANDS[args.command][1](store))
        return 0
    except MetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
