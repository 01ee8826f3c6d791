import pytest

from alpr import spec


def test_classes_follow_the_spec_order():
    assert tuple("0123456789ABCDE") + ("plate_one_line", "plate_two_line") == spec.CLASSES
    assert len(spec.CLASSES) == 17
    assert spec.class_id("0") == 0 and spec.class_id("E") == 14 and spec.class_id("plate_two_line") == 16
    with pytest.raises(KeyError, match="'Z'"):
        spec.class_id("Z")


@pytest.mark.parametrize(
    "text,valid",
    [
        ("12A3456", True),
        ("00E0000", True),
        ("12F3456", False),
        ("12a3456", False),
        ("123456", False),
        ("12A34567", False),
        ("12A 3456", False),
        ("", False),
        ("12A345\n", False),
    ],
)
def test_canonical_text(text, valid):
    assert spec.is_valid_text(text) is valid


def test_labels_and_layouts():
    assert spec.LEGACY_LABELS["l_board"] == spec.PLATE_ONE_LINE
    assert spec.LEGACY_LABELS["r_board"] == spec.PLATE_TWO_LINE
    assert {spec.LEGACY_LABELS[c] for c in "abcde"} == set("ABCDE")
    assert {"r_s_n", "l_s_n", "r_m_n", "l_m_n"} == spec.DROPPED_LABELS
    assert spec.LAYOUT_OF_LABEL == {"plate_one_line": "one_line", "plate_two_line": "two_line"}
    assert spec.is_character("7") and not spec.is_character("plate_one_line")
    assert spec.is_plate("plate_two_line") and not spec.is_plate("A")
    w, h = spec.PLATE_SIZE_MM["one_line"]
    assert 4.6 < w / h < 4.8


def test_splits_in_the_order_of_their_fractions():
    assert spec.SPLITS == ("train", "val", "test")
