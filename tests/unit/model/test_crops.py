"""The zoomed-crop geometry shared by inference (zoom_regions) and training (PlateZoomCrop)."""

import pytest

from alpr.model.crops import MIN_CROP_PX, ZOOM_MARGIN_X, ZOOM_MIN_ASPECT, zoom_crop


def test_default_crop_is_twice_the_plate_wide_and_landscape():
    x0, y0, x1, y1 = zoom_crop((600, 400, 700, 420), (720, 1280))
    assert (x0, x1) == (600 - 100 * ZOOM_MARGIN_X, 700 + 100 * ZOOM_MARGIN_X)
    assert abs((y1 - y0) - 200 * ZOOM_MIN_ASPECT) <= 1 and abs((y0 + y1) / 2 - 410) <= 1


def test_a_tall_plate_gets_three_heights():
    x0, y0, x1, y1 = zoom_crop((100, 100, 140, 160), (720, 1280))  # 40 x 60: 3 heights = 180 > 9/16 * 80
    assert (x0, x1) == (80, 160) and (y0, y1) == (40, 220)


def test_margins_and_shift_move_the_crop():
    base = zoom_crop((600, 400, 700, 420), (720, 1280))
    wide_left = zoom_crop((600, 400, 700, 420), (720, 1280), margin_left=1.0, margin_right=0.0)
    assert wide_left[0] == 500 and wide_left[2] == 700
    moved = zoom_crop((600, 400, 700, 420), (720, 1280), shift=(0.1, 0.0))
    assert (moved[0] - base[0], moved[2] - base[2]) == (10, 10)


def test_clipped_to_the_image():
    x0, y0, x1, y1 = zoom_crop((0, 0, 50, 12), (720, 1280))
    assert (x0, y0) == (0, 0) and x1 == 75 and y1 == 34


@pytest.mark.parametrize(
    "box, hw",
    [
        ((10, 10, 10, 20), (100, 100)),  # empty width
        ((10, 20, 30, 20), (100, 100)),  # empty height
        ((float("nan"), 0, 10, 10), (100, 100)),  # NaN
        ((98, 98, 99.5, 99), (100, 100)),  # clipped to under MIN_CROP_PX
    ],
)
def test_no_crop(box, hw):
    assert zoom_crop(box, hw) is None
    assert MIN_CROP_PX == 8


def test_reader_geometry_gives_the_plate_two_thirds_of_the_width():
    from alpr.model.crops import READER_GEOMETRY

    x0, y0, x1, y1 = zoom_crop((600, 400, 700, 420), (720, 1280), geometry=READER_GEOMETRY)
    assert (x0, x1) == (575, 725)  # a quarter of the plate's width either side
    assert abs((y1 - y0) - 150 * READER_GEOMETRY.min_aspect) <= 1


def test_geometries_are_looked_up_by_name():
    from alpr.model.crops import READER_GEOMETRY, ZOOM_GEOMETRY, CropGeometry, geometry

    assert geometry("zoom") is ZOOM_GEOMETRY and geometry("reader") is READER_GEOMETRY
    with pytest.raises(ValueError, match="known: zoom, reader"):
        geometry("tiles")
    with pytest.raises(ValueError, match="margin_x"):
        CropGeometry(-0.1, 2.0, 0.5)
