"""Alembic's migration environment for the metadata store, run by :mod:`alpr.metadata.migrate` only.

The caller passes an open connection in ``config.attributes["connection"]``, already inside the transaction and
holding the migration lock (see :func:`alpr.metadata.migrate.upgrade`); Alembic runs the revisions on it and
leaves the commit to the caller. There is no offline (``--sql``) mode.
"""

from __future__ import annotations

from alembic import context

from alpr.metadata.migrate import configure_context

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise RuntimeError(
        "the metadata store's migrations run on a connection: use alpr db upgrade (alpr.metadata.migrate), "
        "not the alembic command"
    )
configure_context(context, connection)
with context.begin_transaction():
    context.run_migrations()
