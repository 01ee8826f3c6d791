"""Fixtures shared by the tuning tests (tests/unit/tuning)."""

import os

import pytest

from alpr.settings import Settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """The settings of a fresh workspace, the only ``ALPR_*`` in the environment (the trials inherit it)."""
    for key in [k for k in os.environ if k.startswith("ALPR_")]:
        monkeypatch.delenv(key)
    s = Settings(workspace=tmp_path / "ws")
    for key, value in s.environ().items():
        monkeypatch.setenv(key, value)
    return s
