"""Zoomed plate crops: the region around a plate that the reader reads again at its own input size.

One geometry serves inference (:func:`alpr.model.inference.zoom_regions`: the crops of plates found in a frame) and
training (:class:`alpr.model.plugins.PlateZoomCrop`: the reader learns from crops drawn like those, with jittered
margins), so that the reader sees at training time what it is shown at inference time.

The crop around a plate box of width ``w`` and height ``h`` adds ``margin_x * w`` left and right and is
``max(height_factor * h, min_aspect * crop width)`` high, centred on the plate: with the defaults the plate fills
half of the crop's width and the crop is at least 16:9 landscape (9/16 high), as the widest training plates fill
their images in the one-stage design (docs/detection_design.md, "Reading").
"""

from __future__ import annotations

from typing import Final

#: Margin added left and right of the plate, as a fraction of its width.
ZOOM_MARGIN_X: Final = 0.5
#: The crop is at least this many plate heights high.
ZOOM_HEIGHT_FACTOR: Final = 3.0
#: The crop is at least this fraction of its width high (9/16: a 16:9 landscape crop).
ZOOM_MIN_ASPECT: Final = 9 / 16
#: Crops smaller than this (pixels, either side) are not read.
MIN_CROP_PX: Final = 8


def zoom_crop(
    box: tuple[float, float, float, float],
    image_hw: tuple[int, int],
    *,
    margin_left: float = ZOOM_MARGIN_X,
    margin_right: float = ZOOM_MARGIN_X,
    height_factor: float = ZOOM_HEIGHT_FACTOR,
    min_aspect: float = ZOOM_MIN_ASPECT,
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int, int, int] | None:
    """The crop around one plate.

    Args:
        box: the plate's ``(x1, y1, x2, y2)`` in image pixels.
        image_hw: the image's ``(height, width)`` in pixels.
        margin_left, margin_right: margins as fractions of the plate's width.
        height_factor, min_aspect: the crop is ``max(height_factor * h, min_aspect * crop width)`` high.
        shift: moves the crop's centre by ``(dx * w, dy * h)`` (training jitter; 0 at inference).

    Returns:
        ``(x0, y0, x1, y1)`` integer pixels clipped to the image, or None when the box is empty or the clipped crop
        is under :data:`MIN_CROP_PX` either way.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        return None
    height, width = image_hw
    w, h = x2 - x1, y2 - y1
    cw = w * (1.0 + margin_left + margin_right)
    ch = max(h * height_factor, cw * min_aspect)
    cx = x1 - margin_left * w + cw / 2 + shift[0] * w
    cy = (y1 + y2) / 2 + shift[1] * h
    crop = (
        int(max(0.0, cx - cw / 2)),
        int(max(0.0, cy - ch / 2)),
        int(min(float(width), cx + cw / 2)),
        int(min(float(height), cy + ch / 2)),
    )
    if crop[2] - crop[0] < MIN_CROP_PX or crop[3] - crop[1] < MIN_CROP_PX:
        return None
    return crop
