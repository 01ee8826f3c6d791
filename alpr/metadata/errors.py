"""The metadata store's errors: all derive from :class:`MetadataError` (malformed arguments raise ``ValueError``)."""

from __future__ import annotations

__all__ = ["AlreadyExists", "MetadataConnectionError", "MetadataError", "MigrationError", "NotFound"]


class MetadataError(Exception):
    """Base class of the metadata store's own errors."""


class NotFound(MetadataError, LookupError):
    """A version, run or model named in a call does not exist; the message says which."""


class AlreadyExists(MetadataError):
    """A row with the same unique name (or the same unique key) exists; the message names the duplicate."""


class MetadataConnectionError(MetadataError):
    """The database could not be opened or reached; the message shows the URL with its password hidden."""


class MigrationError(MetadataError):
    """A schema migration cannot run: unknown revision, a database newer than the code, the migration lock not
    obtained in time, or Alembic refusing the step; the message says which."""
