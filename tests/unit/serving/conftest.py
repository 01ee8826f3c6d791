"""Fixtures of the serving tests: headers of JPEG and PNG files that claim a size but hold no pixel data."""

import pytest


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height``, and no pixel data."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0\0\0\0"


def _jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, padding, and a baseline SOF0 frame header claiming ``width`` x ``height``."""
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + app0 + b"\xff" + sof0 + b"\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"


@pytest.fixture(scope="session")
def fake_png_header():
    """``fake_png_header(width, height)``: the bytes of a PNG header claiming that size, without pixel data."""
    return _png_header


@pytest.fixture(scope="session")
def fake_jpeg_header():
    """``fake_jpeg_header(width, height)``: the bytes of a JPEG header claiming that size, without pixel data."""
    return _jpeg_header
