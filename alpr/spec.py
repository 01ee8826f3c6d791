"""The plate, label and reading contract of ``docs/PLATE_SPEC.md``.

Everything that reads or writes plates (annotations, the detector's classes, readings, metrics, serving) takes
its constants from here.
"""

from __future__ import annotations

import re
from typing import Final

#: Characters a plate may hold, as detector classes ``0``..``9`` then ``A``..``E`` (PLATE_SPEC "Labels").
CHARACTERS: Final[tuple[str, ...]] = tuple("0123456789ABCDE")
#: Plate outline classes, one per layout (PLATE_SPEC "Two layouts").
PLATE_ONE_LINE: Final = "plate_one_line"
PLATE_TWO_LINE: Final = "plate_two_line"
PLATE_LABELS: Final[tuple[str, ...]] = (PLATE_ONE_LINE, PLATE_TWO_LINE)
#: The detector's 17 classes, in the order PLATE_SPEC.md gives (COCO category ids are index + 1).
CLASSES: Final[tuple[str, ...]] = CHARACTERS + PLATE_LABELS
#: Layout names used in readings (``"one_line"`` / ``"two_line"``), keyed by plate label.
LAYOUT_OF_LABEL: Final[dict[str, str]] = {PLATE_ONE_LINE: "one_line", PLATE_TWO_LINE: "two_line"}
LAYOUTS: Final[tuple[str, ...]] = ("one_line", "two_line")

#: Canonical text: region (2 digits) + type (1 letter A-E) + serial (4 digits), e.g. ``12A3456``.
PLATE_PATTERN: Final = re.compile(r"^[0-9]{2}[A-E][0-9]{4}$")
#: Characters in a canonical text, and which positions hold a letter (the rest hold digits), from PLATE_PATTERN.
PLATE_LENGTH: Final = 7
POSITION_IS_LETTER: Final[tuple[bool, ...]] = (False, False, True, False, False, False, False)

#: The original project's label names, mapped to ours (PLATE_SPEC "Annotations").
LEGACY_LABELS: Final[dict[str, str]] = {
    "l_board": PLATE_ONE_LINE,
    "r_board": PLATE_TWO_LINE,
    **{c.lower(): c for c in "ABCDE"},
}
#: The original project's text-region shapes, dropped (with a count) on import.
DROPPED_LABELS: Final[frozenset[str]] = frozenset({"r_s_n", "l_s_n", "r_m_n", "l_m_n"})

#: The dataset splits of a training version, in the order their fractions are given (train, val, test): val chooses
#: (checkpoints, reading thresholds), test only reports.
SPLITS: Final[tuple[str, str, str]] = ("train", "val", "test")

#: Physical plate sizes in millimetres (width, height), PLATE_SPEC "Two layouts".
PLATE_SIZE_MM: Final[dict[str, tuple[int, int]]] = {"one_line": (520, 110), "two_line": (335, 170)}


def is_valid_text(text: str) -> bool:
    """Return whether ``text`` is a canonical plate text (``^[0-9]{2}[A-E][0-9]{4}$``)."""
    return bool(PLATE_PATTERN.match(text))


def is_character(label: str) -> bool:
    """Return whether ``label`` is one of the 15 character classes."""
    return label in CHARACTERS


def is_plate(label: str) -> bool:
    """Return whether ``label`` is one of the two plate outline classes."""
    return label in PLATE_LABELS


def class_id(label: str) -> int:
    """Return the 0-based detector class index of ``label``.

    Raises:
        KeyError: ``label`` is not one of :data:`CLASSES`.
    """
    try:
        return CLASSES.index(label)
    except ValueError:
        raise KeyError(f"unknown label {label!r}; expected one of {', '.join(CLASSES)}") from None
