"""Tests of alpr.metadata.store: the engine on both backends (an SQLite file and the real MariaDB/MySQL server,
``db_url``), schema creation (a migration to head), SQLite settings, URL checks and password injection."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from alpr.metadata import MetadataConnectionError, MetadataStore, cli, migrate, schema


def test_create_schema_is_idempotent(db_url, populate, core_tables):
    store = MetadataStore(db_url)
    assert store.create_schema().after == migrate.head()  # create_schema migrates to the newest revision
    populate(store)
    assert not store.create_schema().changed  # second time: no error, data kept
    assert store.schema_revision() == migrate.head()
    assert core_tables <= set(sa.inspect(store.engine).get_table_names())
    assert store.get_annotation_version("annotations-v1")["image_count"] == 3
    assert store.dialect == ("sqlite" if db_url.startswith("sqlite") else "mysql")
    store.dispose()


def test_foreign_keys_enforced_and_sqlite_parent_folder_created(store, tmp_path):
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        path = tmp_path / "deep" / "er" / "m.db"
        other = MetadataStore(f"sqlite:///{path}")
        other.create_schema()
        assert path.is_file()
        other.dispose()
    else:  # InnoDB: foreign keys and transactions
        with store.engine.connect() as conn:
            engines = {
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT engine FROM information_schema.tables WHERE table_schema = DATABASE()"
                )
            }
        assert engines == {"InnoDB"}
    # a mariadb:// URL (the mariadb dialect) gets the same InnoDB / utf8mb4 / binary-collation table options
    ddl = str(CreateTable(schema.models).compile(sa.create_engine("mariadb+pymysql://u@h/db")))
    assert "ENGINE=InnoDB" in ddl and "utf8mb4_bin" in ddl
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema.metadata_obj.tables["images"]),
            {"annotation_version_id": 999, "file_name": "x", "width": 1, "height": 1, "md5": "", "plate_count": 0},
        )


def test_in_memory_sqlite_is_refused():
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"):
        with pytest.raises(ValueError, match="in-memory"):
            MetadataStore(url)
    with pytest.raises(ValueError, match="unsupported"):
        MetadataStore("postgresql://u@h/db")


def test_password_is_injected_but_never_shown(db_url, monkeypatch, caplog, capsys):
    secret = "s3cr3t-Pa55"
    monkeypatch.setenv("ALPR_DB_PASSWORD", secret)
    store = MetadataStore(db_url, echo=True)
    shown = [store.url_for_display, repr(store), str(store), repr(store.engine)]
    if db_url.startswith("sqlite"):
        assert store.engine.url.password is None  # nothing to inject into a file URL
        store.create_schema()
    else:
        assert store.engine.url.password == secret
        assert "***" in store.url_for_display
        # root has no password on the test server: the wrong one is refused; the error must not show it
        with caplog.at_level(logging.DEBUG), pytest.raises(MetadataConnectionError) as info:
            store.create_schema()
        assert store.url_for_display in str(info.value)
        shown += [str(info.value), repr(info.value), caplog.text]
    assert cli.main(["show-url", "--url", db_url]) == 0
    shown.append(capsys.readouterr().out)
    inline = MetadataStore("mysql+pymysql://alpr:inline-pw@db.example:3306/alpr")
    shown += [inline.url_for_display, repr(inline)]
    assert inline.engine.url.password == secret  # the environment wins over the URL
    for text in shown:
        assert secret not in text and "inline-pw" not in text
    store.dispose()
