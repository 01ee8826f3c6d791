"""Tests of alpr.metadata.migrate: the Alembic revisions on both backends (an SQLite file and the real MariaDB
server, ``db_url``): head agrees with schema.py, the baseline is the previous release's schema, a database of the
previous release is upgraded with its rows, downgrades, concurrent upgrades, refusals."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from setuptools import find_packages

from alpr.metadata import MetadataStore, MigrationError, cli, migrate, schema

ROOT = Path(__file__).resolve().parents[3]
#: The schema the previous release's create_schema() made, dumped from the databases (see the files' header).
PREVIOUS_RELEASE = Path(__file__).resolve().with_name("previous_release")
NEW_INDEX = "ix_deployments_target_action_created_at"


def _backend(store: MetadataStore) -> str:
    """``"sqlite"`` or ``"mariadb"`` (the frozen DDL is MariaDB's: another MySQL server skips these tests)."""
    if store.dialect == "sqlite":
        return "sqlite"
    with store.engine.connect():
        if not store.engine.dialect.is_mariadb:
            pytest.skip("the previous release's DDL was dumped from MariaDB")
    return "mariadb"


def _statements(backend: str) -> list[str]:
    text = (PREVIOUS_RELEASE / f"{backend}.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip().rstrip(";") for s in body.split(";\n") if s.strip()]


def _name(ddl: str) -> str:
    match = re.match(r"CREATE (?:TABLE|INDEX) `?(\w+)`?", ddl)
    assert match, ddl
    return match.group(1)


def _normal(ddl: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r" AUTO_INCREMENT=\d+", "", ddl)).strip()


def _unordered(ddl: str) -> list[str]:
    """The lines of a DDL statement in any order (MariaDB lists a table's keys in the order they were made)."""
    lines = re.sub(r" AUTO_INCREMENT=\d+", "", ddl).splitlines()
    return sorted(re.sub(r"\s+", " ", line).strip().rstrip(",") for line in lines if line.strip())


def _previous_release_ddl(backend: str, normal: Callable[[str], object] = _normal) -> dict[str, object]:
    """``{table or index name: its DDL, whitespace normalised}`` of the previous release."""
    return {_name(s): normal(s) for s in _statements(backend)}


def _ddl(store: MetadataStore, normal: Callable[[str], object] = _normal) -> dict[str, object]:
    """The same, read back from the database (without Alembic's version table)."""
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").all()
            found = {name: normal(sql) for name, sql in rows}
        else:
            found = {
                t: normal(conn.exec_driver_sql(f"SHOW CREATE TABLE `{t}`").one()[1])
                for t in sa.inspect(conn).get_table_names()
            }
    found.pop(migrate.VERSION_TABLE, None)
    return found


def _create_previous_release(store: MetadataStore, only: int | None = None) -> None:
    """Build the previous release's schema (its first ``only`` statements) from the frozen DDL."""
    with store.engine.begin() as conn:
        for statement in _statements(_backend(store))[:only]:
            conn.exec_driver_sql(statement)


def _index_names(store: MetadataStore, table: str) -> set[str]:
    return {index["name"] for index in sa.inspect(store.engine).get_indexes(table)}


def _add_deployment(store: MetadataStore, model_id: int) -> None:
    with store.transaction() as tx:
        tx.add_deployment(
            model_id,
            "local",
            "deployed",
            "first model",
            new_eir=0.5,
            served_eir=None,
            served_model_id=None,
            storage_uri="file:///m/1",
            run="run-1",
        )


@contextlib.contextmanager
def _holding_the_lock(store: MetadataStore) -> Iterator[None]:
    """Hold the migration lock of ``store``'s database from another connection: SQLite's write lock (an open
    write transaction), MySQL/MariaDB's named lock (:func:`migrate.migration_lock`)."""
    if store.dialect == "sqlite":
        with store.transaction() as tx:
            tx.connection.exec_driver_sql("SELECT 1")  # the write lock is held from here (BEGIN IMMEDIATE)
            yield
        return
    with store.engine.connect() as holder, migrate.migration_lock(holder, 0):
        yield


@pytest.fixture
def empty(db_url):
    """A store on an empty database (no tables), once per backend."""
    s = MetadataStore(db_url)
    yield s
    s.dispose()


def test_history_is_one_line_of_numbered_revisions_from_the_baseline():
    revisions = migrate.history()
    assert [r.id for r in revisions] == ["0001", "0002", "0003", "0004"]
    assert revisions[0].id == migrate.BASELINE and revisions[0].down_revision is None
    assert all(later.down_revision == earlier.id for earlier, later in zip(revisions, revisions[1:]))
    assert [r.is_head for r in revisions] == [False, False, False, True] and migrate.head() == "0004"
    assert revisions[0].message.startswith("baseline")
    files = sorted(p.name for p in (migrate.MIGRATIONS_DIR / "versions").glob("*.py") if p.name != "__init__.py")
    assert [f[:4] for f in files] == [r.id for r in revisions]  # every file is a revision, in order


def test_upgrade_to_head_agrees_with_schema_py(empty):
    assert empty.schema_revision() is None
    result = empty.create_schema()
    assert result == migrate.MigrationResult(None, migrate.head(), adopted=False) and result.changed
    assert empty.schema_revision() == migrate.head()
    assert empty.schema_differences() == []  # the newest migration and schema.py agree
    tables = set(sa.inspect(empty.engine).get_table_names())
    assert tables == set(schema.metadata_obj.tables) | {migrate.VERSION_TABLE}
    again = empty.create_schema()  # idempotent
    assert again == migrate.MigrationResult(migrate.head(), migrate.head()) and not again.changed


def test_baseline_creates_exactly_the_previous_release_schema(empty):
    result = empty.upgrade_schema(migrate.BASELINE)
    assert result.after == migrate.BASELINE
    expected = _previous_release_ddl(_backend(empty))
    assert len(expected) == (28 if empty.dialect == "sqlite" else 12)  # 12 tables (+ 16 indexes on SQLite)
    assert _ddl(empty) == expected


def test_upgrade_from_the_previous_release_keeps_every_row(empty, populate, row_counts):
    _create_previous_release(empty)
    ids = populate(empty)  # today's writes work on the previous schema
    _add_deployment(empty, ids["model"])
    rows = row_counts(empty)
    assert empty.schema_revision() is None and sum(rows.values()) > 10
    assert "ix_deployments_target" in _index_names(empty, "deployments")
    assert empty.schema_differences() != []  # 0002's index, 0003's tables, 0004's column are missing

    assert cli.main(["upgrade", "--url", empty.engine.url.render_as_string(hide_password=False)]) == 0

    assert empty.schema_revision() == migrate.head()
    assert empty.schema_differences() == []
    assert row_counts(empty) == rows
    indexes = _index_names(empty, "deployments")
    assert NEW_INDEX in indexes and "ix_deployments_target" not in indexes
    assert empty.get_annotation_version("annotations-v1")["image_count"] == 3
    assert empty.current_deployment("local")["model_id"] == ids["model"]
    assert [e["id"] for e in empty.evaluations(ids["model"])] == [ids["evaluation"]]


def test_upgrade_reports_the_adoption_and_creates_the_missing_tables(empty, capsys):
    _create_previous_release(empty, only=2)  # an older database: two of the twelve tables
    url = empty.engine.url.render_as_string(hide_password=False)
    assert cli.main(["current", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("none (no alembic_version")
    result = empty.create_schema()
    assert result.adopted and result.before is None and result.after == migrate.head()
    assert set(sa.inspect(empty.engine).get_table_names()) == set(schema.metadata_obj.tables) | {"alembic_version"}
    assert empty.schema_differences() == []


def test_downgrade_and_upgrade_again_keep_the_rows(empty, populate, row_counts):
    empty.create_schema()
    ids = populate(empty)
    _add_deployment(empty, ids["model"])
    rows = row_counts(empty)
    result = empty.downgrade_schema(migrate.BASELINE)
    assert (result.before, result.after) == (migrate.head(), migrate.BASELINE)
    indexes = _index_names(empty, "deployments")
    assert "ix_deployments_target" in indexes and NEW_INDEX not in indexes
    # 0002's downgrade restores the baseline exactly (MariaDB: the restored key is listed last)
    assert _ddl(empty, _unordered) == _previous_release_ddl(_backend(empty), _unordered)
    assert {d[0] for d in empty.schema_differences()} == {"add_index", "remove_index", "add_table", "add_column"}
    assert row_counts(empty) == rows
    assert empty.upgrade_schema().after == migrate.head() and empty.schema_differences() == []
    assert empty.current_deployment("local")["model_id"] == ids["model"]
    assert empty.downgrade_schema("base").after is None
    assert set(sa.inspect(empty.engine).get_table_names()) == {migrate.VERSION_TABLE}


PREDICTION_LOG_TABLES = {"predictions", "corrections", "model_baselines"}


def test_0003_adds_the_prediction_log_and_its_downgrade_removes_it(empty, populate, row_counts):
    assert empty.upgrade_schema("0002").after == "0002"
    ids = populate(empty)
    _add_deployment(empty, ids["model"])
    rows = row_counts(empty)
    assert not PREDICTION_LOG_TABLES & set(sa.inspect(empty.engine).get_table_names())
    assert {d[0] for d in empty.schema_differences()} == {"add_table", "add_index", "add_column"}

    assert empty.upgrade_schema("0003") == migrate.MigrationResult("0002", "0003")
    assert set(sa.inspect(empty.engine).get_table_names()) >= PREDICTION_LOG_TABLES
    assert [d[0] for d in empty.schema_differences()] == ["add_column"] and row_counts(empty) == rows
    assert _index_names(empty, "predictions") >= {"ix_predictions_received_at", "ix_predictions_image_sha256"}
    with empty.transaction() as tx:  # the new tables work: a baseline and a logged prediction with a correction
        tx.add_model_baseline(
            ids["model"], "test", images=1, plates=1, valid_plates=1, score_edges=[0, 1], score_counts=[1]
        )
        conn = tx.connection
        now = datetime.now(UTC)
        row = {**_prediction_row(now), "event_id": "e/0"}
        prediction = conn.execute(sa.insert(schema.predictions), row).inserted_primary_key[0]
        conn.execute(
            sa.insert(schema.corrections),
            {"prediction_id": prediction, "author": "ana", "plates": [], "created_at": now},
        )
    assert empty.model_baseline(ids["model"])["score_counts"] == [1]
    with pytest.raises(sa.exc.IntegrityError), empty.engine.begin() as conn:  # event ids are unique
        conn.execute(sa.insert(schema.predictions), {**_prediction_row(now), "event_id": "e/0"})

    assert empty.downgrade_schema("0002") == migrate.MigrationResult("0003", "0002")
    assert not PREDICTION_LOG_TABLES & set(sa.inspect(empty.engine).get_table_names())
    assert row_counts(empty) == rows and empty.current_deployment("local")["model_id"] == ids["model"]
    assert empty.upgrade_schema().after == migrate.head() and empty.schema_differences() == []


def test_0004_adds_models_onnx_sha256_and_its_downgrade_removes_it(empty, populate, row_counts):
    assert empty.upgrade_schema("0003").after == "0003"
    ids = populate(empty)  # today's writes, add_model included, work without the column
    rows = row_counts(empty)
    assert "onnx_sha256" not in {c["name"] for c in sa.inspect(empty.engine).get_columns("models")}
    assert empty.upgrade_schema() == migrate.MigrationResult("0003", "0004")
    assert empty.schema_differences() == [] and row_counts(empty) == rows
    assert empty.get_model(ids["model"])["onnx_sha256"] is None  # models before the revision have no export
    with empty.transaction() as tx:
        tx.set_model_export(ids["model"], "ab" * 32)
        with pytest.raises(ValueError, match="onnx_sha256 must be 64 lower-case hex digits, got 'AB'"):
            tx.set_model_export(ids["model"], "AB")
    assert empty.get_model(ids["model"])["onnx_sha256"] == "ab" * 32
    assert empty.downgrade_schema("0003") == migrate.MigrationResult("0004", "0003")
    assert "onnx_sha256" not in {c["name"] for c in sa.inspect(empty.engine).get_columns("models")}
    assert row_counts(empty) == rows
    assert empty.upgrade_schema().after == migrate.head() and empty.schema_differences() == []


def _prediction_row(now: datetime) -> dict:
    return {
        "received_at": now,
        "model_name": "alpr",
        "model_version": "",
        "image_sha256": "1" * 64,
        "image_bytes": 1,
        "width": 1,
        "height": 1,
        "latency_ms": None,
        "plates": [],
        "plate_count": 0,
        "valid_count": 0,
        "score_sum": 0.0,
        "min_score": None,
        "image_uri": None,
    }


def test_a_database_migrated_by_a_newer_release_is_refused(empty, capsys):
    empty.create_schema()
    with empty.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(MigrationError, match=r"'0099' is unknown to this code \(a newer release"):
        empty.create_schema()
    assert cli.main(["upgrade", "--url", empty.engine.url.render_as_string(hide_password=False)]) == 1
    assert "0099" in capsys.readouterr().err
    assert empty.schema_revision() == "0099"  # left as it was


def test_bad_revisions_are_refused_with_the_known_ones(empty):
    for bad in ("", "  ", "nope", "000", "0005"):
        with pytest.raises(
            MigrationError, match=r"no revision given|unknown to this code; known: 0001, 0002, 0003, 0004"
        ):
            empty.upgrade_schema(bad)
    assert empty.schema_revision() is None  # nothing was created
    empty.create_schema()
    assert empty.upgrade_schema("0001") == migrate.MigrationResult("0004", "0004")  # an upgrade never goes back
    with pytest.raises(MigrationError, match="'0005' is unknown"):
        empty.downgrade_schema("0005")
    assert empty.schema_revision() == migrate.head()


def test_concurrent_upgrades_wait_for_each_other(empty):
    """Three processes upgrade the same empty database at once, released together after waiting on the lock."""
    url = empty.engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "alpr.metadata", "upgrade", "--url", url]
    with _holding_the_lock(empty):
        procs = [
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        time.sleep(5)  # long enough for each to start and block on the lock
        assert [p.poll() for p in procs] == [None, None, None]  # all waiting
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    lines = [out.strip() for out, _ in outputs]
    assert sum("migrated empty -> 0004" in line for line in lines) == 1, lines  # one migrated, two found it done
    assert sum("at 0004, nothing to do" in line for line in lines) == 2, lines
    assert empty.schema_revision() == migrate.head() and empty.schema_differences() == []


def test_the_lock_times_out_with_a_clear_error(empty):
    empty.create_schema()
    if empty.dialect == "sqlite":
        waiting = MetadataStore(f"{empty.engine.url.render_as_string(hide_password=False)}?timeout=0.2")
        with empty.transaction(), pytest.raises(MigrationError, match="SQLite write lock"):
            waiting.create_schema()
        waiting.dispose()
        return
    with empty.engine.connect() as conn:
        with _holding_the_lock(empty), pytest.raises(MigrationError, match="timed out after 0.5 s waiting for the"):
            migrate.upgrade(conn, lock_timeout_s=0.5)
        assert migrate.upgrade(conn).after == migrate.head()  # free again


def test_new_revision_writes_the_next_numbered_file(tmp_path, monkeypatch, db_url):
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", copy)  # never write into the package
    with pytest.raises(ValueError, match="empty"):
        migrate.new_revision("  ")
    with pytest.raises(ValueError, match="connection"):
        migrate.new_revision("x", autogenerate=True)
    store = MetadataStore(db_url)
    store.create_schema()
    with store.engine.connect() as conn:
        path = migrate.new_revision("Add a note column", autogenerate=True, connection=conn)
    store.dispose()
    assert path == copy / "versions" / "0005_add_a_note_column.py"
    text = path.read_text()
    assert "revision: str = '0005'" in text and "down_revision: str | None = '0004'" in text
    assert "op." not in text  # schema.py and the database at head agree: nothing to migrate
    assert [r.id for r in migrate.history()] == ["0001", "0002", "0003", "0004", "0005"] and migrate.head() == "0005"
    assert cli.main(["revision", "-m", "second"]) == 0
    assert (copy / "versions" / "0006_second.py").is_file()


def test_the_migrations_ship_in_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(str(ROOT), include=config["packages"]["find"]["include"])
    assert {"alpr.metadata.migrations", "alpr.metadata.migrations.versions"} <= set(packages)
    assert config["package-data"]["alpr.metadata.migrations"] == ["script.py.mako"]
    assert Path(migrate.__file__).resolve().parent / "migrations" == migrate.MIGRATIONS_DIR
    assert {"env.py", "script.py.mako"} <= {p.name for p in migrate.MIGRATIONS_DIR.iterdir()}
