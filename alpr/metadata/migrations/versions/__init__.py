"""The revisions, oldest first by number (``NNNN_slug.py``); Alembic reads them, nothing imports them."""
