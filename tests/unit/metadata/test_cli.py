"""Tests of alpr.metadata.cli: ``alpr db upgrade|init|current|check|downgrade|history|revision|show-url``
(``python -m alpr.metadata``) on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from alpr.metadata import MetadataStore, cli, migrate

ROOT = Path(__file__).resolve().parents[3]


def test_cli_init_and_show_url(db_url, monkeypatch, capsys, core_tables):
    assert cli.main(["init", "--url", db_url]) == 0
    assert "metadata schema ready" in capsys.readouterr().out
    assert cli.main(["init", "--url", db_url]) == 0  # idempotent
    capsys.readouterr()
    store = MetadataStore(db_url)
    assert core_tables <= set(sa.inspect(store.engine).get_table_names())
    store.dispose()
    monkeypatch.setenv("ALPR_DB_URL", db_url)
    assert cli.main(["show-url"]) == 0
    assert capsys.readouterr().out.strip() == MetadataStore(db_url).url_for_display
    monkeypatch.delenv("ALPR_DB_URL")
    assert cli.main(["init"]) == 2
    assert "ALPR_DB_URL" in capsys.readouterr().err
    assert cli.main(["init", "--url", "not a url"]) == 1
    # as a module, in a fresh interpreter, the URL taken from the environment
    env = {**os.environ, "ALPR_DB_URL": db_url}
    env.pop("ALPR_DB_PASSWORD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "alpr.metadata", "init"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "metadata schema ready" in proc.stdout


def test_cli_unreachable_database_fails_cleanly(db_url, tmp_path, capsys):
    if db_url.startswith("sqlite"):
        blocker = tmp_path / "file"
        blocker.write_text("")
        url = f"sqlite:///{blocker}/sub/m.db"  # the parent "folder" is a file
        with pytest.raises(OSError):
            MetadataStore(url)
        url = f"sqlite:///{tmp_path}/dir.db"
        (tmp_path / "dir.db").mkdir()  # a folder where the database file should be
    else:
        url = sa.engine.make_url(db_url).set(database="alpr_no_such_database_x").render_as_string(False)
    assert cli.main(["init", "--url", url]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_cli_init_creates_the_schema_in_a_temp_sqlite_file(tmp_path, monkeypatch, capsys, core_tables):
    monkeypatch.delenv("ALPR_DB_URL", raising=False)
    path = tmp_path / "new" / "metadata.db"
    url = f"sqlite:///{path}"
    assert cli.main(["init", "--url", url]) == 0
    assert capsys.readouterr().out == f"metadata schema ready at {url}\n"
    assert path.is_file()
    store = MetadataStore(url)
    assert core_tables <= set(sa.inspect(store.engine).get_table_names())
    store.dispose()


@pytest.mark.mysql
def test_cli_init_never_prints_the_password(mysql_admin_engine, monkeypatch, capsys):
    monkeypatch.delenv("ALPR_DB_PASSWORD", raising=False)
    url = mysql_admin_engine.url.set(password="wrong-Pa55").render_as_string(hide_password=False)
    assert cli.main(["init", "--url", url]) == 1  # root has no password on the test server: refused
    out, err = capsys.readouterr()
    assert "cannot connect" in err and "***" in err
    assert "wrong-Pa55" not in out + err


def test_cli_help_names_alpr_db_and_its_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli._parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: alpr db")
    for command in cli.COMMANDS:
        assert command in text
        with pytest.raises(SystemExit):
            cli._parse_args([command, "--help"])
        assert ("--url" in capsys.readouterr().out) == (command != "history")
    for missing in (["downgrade"], ["revision"]):  # --revision and -m are required
        with pytest.raises(SystemExit) as info:
            cli._parse_args(missing)
        assert info.value.code == 2 and "required" in capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "alpr.metadata", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("usage: alpr db")


def test_cli_upgrade_current_check_downgrade_history(db_url, monkeypatch, capsys):
    monkeypatch.setenv("ALPR_DB_URL", db_url)
    assert cli.main(["current"]) == 0
    assert capsys.readouterr().out.startswith("none (no alembic_version")
    assert cli.main(["upgrade", "--revision", migrate.BASELINE]) == 0
    assert capsys.readouterr().out.startswith("metadata schema migrated empty -> 0001 at ")
    assert cli.main(["current"]) == 0
    assert capsys.readouterr().out == "0001\n"
    assert cli.main(["check"]) == 1  # at the baseline: 0002 moves an index; 0003 adds 3 tables with 6 indexes;
    # 0004 adds a column
    out = capsys.readouterr().out
    assert out.startswith("12 difference(s) between the database and schema.py") and "add_index" in out
    assert "add_table" in out and "add_column" in out
    assert cli.main(["upgrade"]) == 0
    assert capsys.readouterr().out.startswith("metadata schema migrated 0001 -> 0004 at ")
    assert cli.main(["upgrade"]) == 0
    assert capsys.readouterr().out.startswith("metadata schema at 0004, nothing to do")
    assert cli.main(["current"]) == 0 and capsys.readouterr().out == "0004 (head)\n"
    assert cli.main(["check"]) == 0 and "matches schema.py" in capsys.readouterr().out
    assert cli.main(["downgrade", "--revision", "0001"]) == 0
    assert capsys.readouterr().out.startswith("metadata schema migrated 0004 -> 0001 at ")
    assert cli.main(["current"]) == 0 and capsys.readouterr().out == "0001\n"
    assert cli.main(["upgrade", "--revision", "nope"]) == 1
    assert "'nope' is unknown to this code; known: 0001, 0002, 0003, 0004" in capsys.readouterr().err
    assert cli.main(["history"]) == 0  # needs no database
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("base -> 0001: baseline") and lines[1].startswith("0001 -> 0002: deployments")
    assert lines[2].startswith("0002 -> 0003: prediction log")
    assert lines[3].startswith("0003 -> 0004 (head): models: ``onnx_sha256``")
    monkeypatch.delenv("ALPR_DB_URL")
    for command in (["upgrade"], ["current"], ["check"], ["revision", "-m", "x", "--autogenerate"]):
        assert cli.main(command) == 2
        assert "ALPR_DB_URL" in capsys.readouterr().err
    assert cli.main(["revision", "-m", " "]) == 1  # an empty message: refused before anything is written
    assert "empty" in capsys.readouterr().err
