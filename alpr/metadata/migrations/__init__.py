"""The metadata store's Alembic migration environment: ``env.py`` and one revision per schema change in
``versions/`` (``0001_baseline`` is the schema before migrations). Run them with :mod:`alpr.metadata.migrate`
(``alpr db upgrade``); there is no ``alembic.ini``: the configuration is built in code from the store's URL."""
