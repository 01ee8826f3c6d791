"""Zoomed plate crops: the region around a plate that the reader reads again at its own input size.

Each geometry serves inference (:func:`alpr.model.inference.zoom_regions`: the crops of plates found in a frame) and
training (:class:`alpr.model.plugins.PlateZoomCrop`: the reader learns from crops drawn like those, with jittered
margins), so that the reader sees at training time what it is shown at inference time. There are two
(:data:`GEOMETRIES`): :data:`ZOOM_GEOMETRY`, the one-detector design's zoom pass, whose crops look like the whole
frames that detector is trained on, and :data:`READER_GEOMETRY`, the two-stage reader's, which gives the plate
two thirds of the crop's width (the plate detector's boxes are close enough that a quarter of the plate's width on
either side covers their error) and so more pixels per character at a smaller input.

The crop around a plate box of width ``w`` and height ``h`` adds ``margin_x * w`` left and right and is
``max(height_factor * h, min_aspect * crop width)`` high, centred on the plate: with the defaults the plate fills
half of the crop's width and the crop is at least 16:9 landscape (9/16 high), as the widest training plates fill
their images in the one-stage design (docs/detection_design.md, "Reading").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Margin added left and right of the plate, as a fraction of its width.
ZOOM_MARGIN_X: Final = 0.5
#: The crop is at least this many plate heights high.
ZOOM_HEIGHT_FACTOR: Final = 3.0
#: The crop is at least this fraction of its width high (9/16: a 16:9 landscape crop).
ZOOM_MIN_ASPECT: Final = 9 / 16
#: Crops smaller than this (pixels, either side) are not read.
MIN_CROP_PX: Final = 8
#: Training jitter of a crop (``alpr.model.plugins.PlateZoomCrop``'s defaults): each margin is drawn from these
#: multiples of the geometry's ``margin_x``, the height factor from :data:`HEIGHT_JITTER` times its
#: ``height_factor``, and the centre moves by up to :data:`SHIFT_JITTER` plate widths / heights.
MARGIN_JITTER: Final = (0.6, 1.4)
#: See :data:`MARGIN_JITTER`.
HEIGHT_JITTER: Final = (0.8, 1.3)
#: See :data:`MARGIN_JITTER`.
SHIFT_JITTER: Final = 0.08


@dataclass(frozen=True)
class CropGeometry:
    """The shape of the crop around a plate box of width ``w`` and height ``h``: ``margin_x * w`` added left and
    right, and ``max(height_factor * h, min_aspect * crop width)`` high.

    Raises:
        ValueError: a negative margin, or a height factor or aspect that is not positive.
    """

    margin_x: float
    height_factor: float
    min_aspect: float

    def __post_init__(self) -> None:
        if self.margin_x < 0 or self.height_factor <= 0 or self.min_aspect <= 0:
            raise ValueError(f"CropGeometry: margin_x must be >= 0, height_factor and min_aspect > 0, got {self}")


#: The one-detector design's zoom pass (the plate fills half the crop's width).
ZOOM_GEOMETRY: Final = CropGeometry(ZOOM_MARGIN_X, ZOOM_HEIGHT_FACTOR, ZOOM_MIN_ASPECT)
#: The two-stage reader's crops (the plate fills two thirds of the crop's width; docs/detection_design.md).
READER_GEOMETRY: Final = CropGeometry(0.25, 2.0, ZOOM_MIN_ASPECT)
#: The geometries by the name a model directory's ``model.json`` records (``crop_geometry``).
GEOMETRIES: Final = {"zoom": ZOOM_GEOMETRY, "reader": READER_GEOMETRY}


def geometry(name: str) -> CropGeometry:
    """The crop geometry called ``name`` in :data:`GEOMETRIES`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    try:
        return GEOMETRIES[name]
    except KeyError:
        raise ValueError(f"unknown crop geometry {name!r}; known: {', '.join(GEOMETRIES)}") from None


def zoom_crop(
    box: tuple[float, float, float, float],
    image_hw: tuple[int, int],
    *,
    geometry: CropGeometry = ZOOM_GEOMETRY,
    margin_left: float | None = None,
    margin_right: float | None = None,
    height_factor: float | None = None,
    shift: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int, int, int] | None:
    """The crop around one plate.

    Args:
        box: the plate's ``(x1, y1, x2, y2)`` in image pixels.
        image_hw: the image's ``(height, width)`` in pixels.
        geometry: margins, height factor and minimum aspect (:class:`CropGeometry`).
        margin_left, margin_right: margins as fractions of the plate's width (default: ``geometry.margin_x``).
        height_factor: the crop is ``max(height_factor * h, geometry.min_aspect * crop width)`` high (default:
            ``geometry.height_factor``).
        shift: moves the crop's centre by ``(dx * w, dy * h)`` (training jitter; 0 at inference).

    Returns:
        ``(x0, y0, x1, y1)`` integer pixels clipped to the image, or None when the box is empty or the clipped crop
        is under :data:`MIN_CROP_PX` either way.
    """
    margin_left = geometry.margin_x if margin_left is None else margin_left
    margin_right = geometry.margin_x if margin_right is None else margin_right
    height_factor = geometry.height_factor if height_factor is None else height_factor
    min_aspect = geometry.min_aspect
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
