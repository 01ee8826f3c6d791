"""Shared assertion for the tests of everything that returns a reading (docs/PLATE_SPEC.md "A reading")."""

from __future__ import annotations

from alpr.spec import LAYOUTS

#: The keys of one plate of a reading.
PLATE_KEYS = frozenset({"text", "layout", "valid", "box", "score", "characters"})


def check_reading(reading: dict) -> None:
    """Assert that ``reading`` has the contract's shape: ``{"plates": [...]}``, plates by descending score, each with
    exactly :data:`PLATE_KEYS`, a known layout, a 4-number box and a boolean ``valid``."""
    assert set(reading) == {"plates"}
    scores = [p["score"] for p in reading["plates"]]
    assert scores == sorted(scores, reverse=True)
    for plate in reading["plates"]:
        assert set(plate) == PLATE_KEYS
        assert plate["layout"] in LAYOUTS and len(plate["box"]) == 4
        assert isinstance(plate["valid"], bool)
