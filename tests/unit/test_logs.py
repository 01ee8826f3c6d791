"""The one logging set-up of every entry point (alpr.logs): one format, one handler however often it is called,
the level honoured."""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alpr import logs

ROOT = Path(__file__).resolve().parents[2]

#: What a line of :data:`alpr.logs.LOG_FORMAT` looks like: ``2024-01-02 03:04:05,678 4242 INFO name: message``.
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<pid>\d+) (?P<level>[A-Z]+) (?P<name>[\w.]+): (?P<msg>.*)$"
)


@pytest.fixture(autouse=True)
def _restore_root_logger():
    """``logs.setup`` reconfigures the root logger: put back its handlers and level after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def _ours(stream: io.StringIO) -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is stream]


def test_one_format_time_pid_level_logger_message():
    stream = io.StringIO()
    logs.setup(stream=stream)
    logging.getLogger("alpr.test").info("hello %s", "plates")
    (line,) = stream.getvalue().splitlines()
    match = LINE.match(line)
    assert match, line
    assert match["level"] == "INFO" and match["name"] == "alpr.test" and match["msg"] == "hello plates"
    assert int(match["pid"]) == os.getpid()
    assert logs.LOG_FORMAT == "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def test_second_setup_replaces_the_handler_instead_of_stacking_one():
    first, second = io.StringIO(), io.StringIO()
    logs.setup(stream=first)
    logs.setup(stream=second)
    logs.setup(stream=second)
    assert _ours(first) == [] and len(_ours(second)) == 1
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("alpr.test").warning("once")
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1  # printed once, not once per setup() call


def test_level_is_honoured():
    stream = io.StringIO()
    logs.setup(logging.WARNING, stream=stream)
    assert logging.getLogger().level == logging.WARNING
    log = logging.getLogger("alpr.test")
    log.info("hidden")
    log.debug("hidden too")
    log.warning("shown")
    log.error("also shown")
    assert [LINE.match(ln)["msg"] for ln in stream.getvalue().splitlines()] == ["shown", "also shown"]

    logs.setup(logging.DEBUG, stream=stream)
    log.debug("now shown")
    assert stream.getvalue().splitlines()[-1].endswith("DEBUG alpr.test: now shown")


def test_default_stream_is_standard_error(capsys):
    logs.setup()
    logging.getLogger("alpr.test").info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == "" and "INFO alpr.test: to stderr" in captured.err


def test_import_configures_nothing():
    """Importing alpr.logs leaves the root logger alone: only an entry point's explicit setup() configures it."""
    code = "import logging, alpr.logs; r = logging.getLogger(); print(len(r.handlers), r.level)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", str(logging.WARNING)]


def test_no_other_module_defines_a_log_format_or_configures_the_root_logger():
    """The project's code calls logs.setup(); nothing else calls logging.basicConfig or spells a format."""
    offenders = []
    for folder in ("alpr", "components", "pipelines", "dataset_tools", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "alpr" / "logs.py":
                continue
            text = path.read_text(encoding="utf-8")
            if "basicConfig(" in text or "%(levelname)" in text or "%(asctime)" in text:
                offenders.append(str(path.relative_to(ROOT)))
    for path in sorted(ROOT.glob("*.py")):
        if "basicConfig(" in path.read_text(encoding="utf-8"):
            offenders.append(path.name)
    assert offenders == []
