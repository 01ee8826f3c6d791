"""Synthetic Korean-style plates drawn onto real photographs, with labelme annotations.

Each sample is a photograph shipped inside an installed package (scikit-image's ``skimage/data`` files and
matplotlib's ``mpl-data/sample_data`` images, read by path, never over the network), randomly cropped, scaled
and flipped (or a collage of several, or a drawn street-like scene), with one or two plates pasted in
perspective. A plate is first drawn flat (with Pillow, in one of the upright TTF faces shipped with matplotlib and
the :data:`FONT_PACKAGES`, or with OpenCV in one of its :data:`HERSHEY_FACES`; at a random stroke weight, every glyph
slanted and elastically distorted a little) and then warped into the photo with OpenCV; the same warp maps the
plate's corners and every character's tight ink box, which become labelme polygons:

- one ``plate_one_line`` / ``plate_two_line`` polygon per plate: its 4 warped corners, clockwise from top-left;
- one polygon per character, labelled with the character (``0``..``9``, ``A``..``E``), in reading order.

All shapes of a plate share its ``group_id`` (the plate's index in the image). Plate text, labels and physical
aspect ratios come from :mod:`alpr.spec` (``docs/PLATE_SPEC.md``).

What a frame looks like is set by its :class:`Conditions` (frame sizes, plate sizes and count, pose, exposure,
blur, noise, occlusion, JPEG quality), with two presets:

- :data:`CLASSIC` (the default): the constants below, as the synthesizer has always drawn them: 512-800 px
  frames, 1-2 large plates (22-85 % of the frame width), a 2-D corner-jitter perspective and rotation.
- :data:`ROAD`: frames like a roadside or gate camera's (640x480 to 1920x1080), 1-4 plates from 3 % to 45 % of the
  frame width (log-uniform), a real 3-D pose (yaw, pitch, roll) projected through a pinhole camera, night and
  over-exposed frames, motion and defocus blur, partial occlusion and JPEG quality 30-95.

A folder can hold a mixture of presets (``classic+road``, :func:`mixture`): each draws its own consecutive range
of sample indices.

Under any conditions the labels stay exact: one homography maps the flat plate's corners, every character's ink
box and every pixel of the plate into the frame, and an occluder never hides more than
:attr:`Conditions.max_occluded_fraction` of any character's box, so every character keeps its label.

Everything random is drawn from a :class:`numpy.random.Generator` seeded from ``(seed, index)``, so a sample
depends on nothing else: the same seed gives byte-identical JSON and identical pixels.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from alpr import spec

#: labelme version written into every annotation file.
LABELME_VERSION: Final = "5.4.1"
#: scikit-image's bundled photographs used as backgrounds (file names under ``skimage/data``).
SKIMAGE_PHOTOS: Final[tuple[str, ...]] = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg",
    "retina.jpg", "page.png", "text.png", "moon.png", "coins.png", "clock_motion.png", "color.png",
    "logo.png", "cell.png",
)  # fmt: skip
#: Image file suffixes taken from matplotlib's ``mpl-data/sample_data`` folder.
PHOTO_SUFFIXES: Final[tuple[str, ...]] = (".jpg", ".jpeg", ".png")
#: Font file names containing one of these are skipped: slanted faces, symbol/math fonts, subsets, fallback.
EXCLUDED_FONT_MARKERS: Final[tuple[str, ...]] = (
    "Oblique", "Italic", "Ita", "It.ttf", "Sym", "NonUni", "Display", "LastResort", "cmex", "cmsy", "cmmi", "cmti",
)  # fmt: skip
#: Installed Python packages that ship TTF fonts, and where inside the package (a glob): more type faces than
#: matplotlib's, so the model sees many designs of each glyph. PyPI ``font-roboto``, ``font-source-sans-pro``,
#: ``font-caladea`` (serif), ``font-fredoka-one`` (rounded), ``font-amatic-sc`` (hand-drawn) and ``captcha`` (which
#: ships Droid Sans Mono, a monospaced face). A package that is not installed is skipped.
FONT_PACKAGES: Final[dict[str, str]] = {
    "font_roboto": "files/*.ttf", "font_source_sans_pro": "files/*.ttf", "font_caladea": "files/*.ttf",
    "font_fredoka_one": "files/*.ttf", "font_amatic_sc": "files/*.ttf", "captcha": "data/*.ttf",
}  # fmt: skip
#: OpenCV 4's built-in Hershey vector faces (single-stroke and multi-stroke line drawings, unlike any outline
#: font), used as plate faces under these names; drawn with ``cv2.putText`` at a stroke thickness chosen like an
#: outline font's weight. The script faces are left out (cursive). (OpenCV 5 draws these names from outline
#: fonts instead; ``requirements/constraints.txt`` pins OpenCV 4.)
HERSHEY_FACES: Final[dict[str, int]] = {
    "hershey:simplex": cv2.FONT_HERSHEY_SIMPLEX, "hershey:duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey:complex": cv2.FONT_HERSHEY_COMPLEX, "hershey:triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "hershey:plain": cv2.FONT_HERSHEY_PLAIN,
}  # fmt: skip
#: Glyph-level augmentation, so that the model learns characters rather than type faces: every plate gets one
#: random horizontal shear (a slant, as a fraction of glyph height per unit height, both ways), and every glyph its
#: own random elastic distortion (a smooth displacement field, Simard et al. 2003, "Best practices for
#: convolutional neural networks applied to visual document analysis", section 2) and stroke-weight change
#: (morphological dilation or erosion), each with the given probability and largest size.
GLYPH_SHEAR: Final = (0.5, 0.18)
GLYPH_ELASTIC: Final = (0.3, 0.035)
GLYPH_WEIGHT: Final = (0.3, 0.035)
#: Smoothing of the elastic displacement field, as a fraction of the glyph height (larger: smoother bends).
GLYPH_ELASTIC_SMOOTHING: Final = 0.12
#: Probabilities of a collage background (tiles of 2-4 photos) and of a drawn street-like background (gradient,
#: rectangles, lines), instead of one photo: more kinds of scene than the bundled photographs alone.
COLLAGE_PROBABILITY: Final = 0.25
DRAWN_BACKGROUND_PROBABILITY: Final = 0.1

#: Output image: long side in pixels (inclusive range) and width:height aspect ratios.
IMAGE_LONG_SIDE: Final[tuple[int, int]] = (512, 800)
IMAGE_ASPECTS: Final[tuple[tuple[int, int], ...]] = ((4, 3), (16, 9), (3, 2), (1, 1))
#: Probability that an image holds two plates instead of one.
TWO_PLATES_PROBABILITY: Final = 0.3
#: Plate width as a fraction of the image width, per layout (then shrunk further if the plate does not fit).
PLATE_WIDTH_FRACTION: Final[dict[str, tuple[float, float]]] = {"one_line": (0.35, 0.85), "two_line": (0.22, 0.50)}
#: Largest corner displacement of the perspective jitter, as a fraction of the plate's width / height.
MAX_CORNER_JITTER: Final = 0.12
#: Largest in-plane rotation of a plate, degrees.
MAX_ROTATION_DEG: Final = 10.0
#: JPEG quality range (inclusive) used by :func:`synthesize`.
JPEG_QUALITY: Final[tuple[int, int]] = (40, 95)
#: Frame photometry: probability of a brightness gradient and/or soft shadow over the frame; ranges of the contrast
#: factor (about the frame's mean), the brightness offset (grey levels), the gamma and the sigma of the Gaussian
#: pixel noise (grey levels).
FRAME_LIGHTING_PROBABILITY: Final = 0.3
CONTRAST: Final[tuple[float, float]] = (0.7, 1.25)
BRIGHTNESS: Final[tuple[float, float]] = (-30.0, 30.0)
GAMMA: Final[tuple[float, float]] = (0.7, 1.4)
NOISE_SIGMA: Final[tuple[float, float]] = (0.0, 8.0)
#: Frame blur: ``(probability, (smallest, largest))`` of a Gaussian blur (sigma, px) and of a motion blur (length,
#: px, at any angle).
GAUSSIAN_BLUR: Final[tuple[float, tuple[float, float]]] = (0.3, (0.4, 1.3))
MOTION_BLUR: Final[tuple[float, tuple[int, int]]] = (0.2, (3, 7))
#: Longest motion blur and largest defocus disk :class:`Conditions` accept, in pixels: OpenCV filters a kernel of
#: up to 11 x 11 directly, a larger one through the DFT, several times slower on a 1920 x 1080 frame.
MAX_BLUR_KERNEL_PX: Final = 11
#: Legibility of an over-exposed frame: ``(dark, ceiling)``: the gain is capped so that grey level ``dark`` maps no
#: higher than ``ceiling``, 45 levels below the clipped white. 110 is the lightest dark colour :func:`_random_colours`
#: draws (ink on a light plate, or a dark plate under light ink, such as the green plate's luminance of 85).
OVEREXPOSURE_LEGIBILITY: Final[tuple[float, float]] = (110.0, 210.0)
#: Smallest distance in pixels between a plate (or its holder) and the image border.
BORDER_MARGIN_PX: Final = 3
#: Smallest gap between the boxes of two plates (or holders), as a fraction of the image width.
PLATE_GAP_FRACTION: Final = 0.03

_REF_FONT_SIZE: Final = 160  # glyphs are rasterised once at this size, then resized onto each plate
_INK_THRESHOLD: Final = 64  # a pixel is ink when its coverage is at least 64/255
_MIN_STROKE_RATIO: Final = 0.10  # stroke weights (fraction of glyph height) a plate is drawn with: from a
_MAX_STROKE_RATIO: Final = 0.21  # regular weight to a heavy bold, as plate faces range
_MAX_PLACEMENT_TRIES: Final = 40
_LIGHT_FIELD_STEP: Final = 8  # smooth light fields are computed on a grid this much coarser than the frame
_OCCLUDER_TRIES: Final = 6  # an occluder that hides too much of a character shrinks (x 0.7) this many times
_OCCLUDER_MASK_PLATE_PX: Final = 48  # occluders are drawn and measured with the plate at least this many px tall


@dataclass(frozen=True)
class _FlatPlate:
    """A plate drawn flat: ``image`` is float32 RGB in [0, 255], H x W x 3; ``boxes`` are the characters' tight
    ink boxes ``(x0, y0, x1, y1)`` in canvas pixels (edge coordinates), in reading order."""

    layout: str
    text: str
    image: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]


@dataclass(frozen=True)
class _Placement:
    """Where a plate goes: ``quad`` is its 4 corners (TL, TR, BR, BL) in image pixels, ``holder`` the optional
    larger quad of a plate holder drawn underneath, ``width`` the plate's nominal width in pixels."""

    quad: np.ndarray
    holder: np.ndarray | None
    width: float


# --------------------------------------------------------------------------------------------------- public API


def sample_stem(index: int) -> str:
    """Return the file stem of sample ``index`` (``synth_000042``); the image is ``<stem>.jpg``, labels ``.json``."""
    return f"synth_{index:06d}"


def random_plate_text(rng: np.random.Generator) -> str:
    """Return a random canonical plate text: 2 digits, a letter ``A``-``E``, 4 digits (e.g. ``12A3456``).

    The alphabets come from :data:`alpr.spec.CHARACTERS`; the result matches :data:`alpr.spec.PLATE_PATTERN`.
    """
    digits = [c for c in spec.CHARACTERS if c.isdigit()]
    letters = [c for c in spec.CHARACTERS if c.isalpha()]
    region = "".join(rng.choice(digits, size=2))
    serial = "".join(rng.choice(digits, size=4))
    return f"{region}{rng.choice(letters)}{serial}"


@dataclass(frozen=True)
class Sources:
    """What samples are drawn from, when not the defaults (e.g. a held-out set with fonts and photographs the
    training data never used).

    Attributes:
        fonts: TTF files for the plate text (default :func:`font_paths`); each must pass :func:`_font_is_usable`.
        photos: background image files (default :func:`photo_paths`).
        long_side: ``(min, max)`` image long side in pixels (default: the :class:`Conditions`' frame sizes).
        aspects: width:height ratios to draw from (default: the :class:`Conditions`' frame sizes).
        distort_glyphs: slant and distort every glyph (:func:`_distort_glyph`; default True). A held-out set may
            turn it off to draw each face as designed.

    Raises:
        ValueError: an empty font or photo list, or a font that cannot draw every plate character distinctly.
    """

    fonts: tuple[str, ...] | None = None
    photos: tuple[Path, ...] | None = None
    long_side: tuple[int, int] | None = None
    aspects: tuple[tuple[int, int], ...] | None = None
    distort_glyphs: bool = True

    def __post_init__(self) -> None:
        if self.fonts is not None:
            if not self.fonts:
                raise ValueError("Sources.fonts is empty")
            bad = [f for f in self.fonts if not _font_is_usable(str(f))]
            if bad:
                raise ValueError(f"font(s) cannot draw 0-9 and A-E as distinct upright glyphs: {', '.join(bad)}")
        if self.photos is not None and not self.photos:
            raise ValueError("Sources.photos is empty")

    def font_list(self) -> tuple[str, ...]:
        return tuple(str(f) for f in self.fonts) if self.fonts is not None else font_paths()

    def photo_list(self) -> tuple[Path, ...]:
        return tuple(Path(p) for p in self.photos) if self.photos is not None else photo_paths()


_PROJECTIONS: Final = ("jitter", "pinhole")
_PHOTOMETRIES: Final = ("classic", "camera")


@dataclass(frozen=True)
class Conditions:
    """What the frames look like: sizes, plates, pose, exposure, blur, noise, occlusion and JPEG quality.

    The defaults are :data:`CLASSIC` (the module constants); :data:`ROAD` is the roadside-camera preset. Build
    others with :func:`dataclasses.replace`. Ranges are ``(smallest, largest)``, inclusive; probabilities are per
    frame unless said otherwise.

    Attributes:
        long_side: frame long side in px, drawn uniformly (integers).
        aspects: frame width:height ratios, drawn uniformly.
        frame_sizes: ``(width, height)`` camera frame sizes drawn uniformly instead of ``long_side`` and
            ``aspects`` when not empty. :attr:`Sources.long_side` / :attr:`Sources.aspects`, when set, win.
        plate_count_weights: probabilities of 1, 2, ... plates in a frame (summing to 1); a plate that finds no free
            spot is left out. One uniform draw ``u`` picks the count: the largest count takes ``[0, p_n)``, the
            next ``[p_n, p_n + p_(n-1))`` and so on.
        plate_width: per layout (every one of :data:`alpr.spec.LAYOUTS`), the plate width as a fraction of the
            frame width: with ``projection="jitter"`` the flat plate's width, with ``"pinhole"`` the width of the
            projected plate's bounding box (what a detector sees and ``alpr.model.breakdown`` buckets).
        log_uniform_width: draw the width fraction log-uniformly (equal numbers of plates per octave of size,
            so most plates are small) instead of uniformly.
        projection: ``"jitter"``: the flat plate rotated in the image plane by up to ``max_rotation_deg`` with its
            corners jittered by up to ``max_corner_jitter`` of its size; ``"pinhole"``: the plate rotated in 3-D
            (yaw about its vertical axis, pitch about its horizontal axis, roll in its plane, each uniform up to
            the ``max_*_deg``) and projected through a pinhole camera with horizontal field of view ``fov_deg``,
            from the distance at which it appears at its drawn width (:func:`_project_plate`).
        photometry: ``"classic"``: frame lighting, contrast, brightness, gamma, blur and noise in float32
            (:func:`_degrade`); ``"camera"``: the same plus night and over-exposed frames, defocus blur, applied
            as an 8-bit tone curve (fast on large frames; :func:`_degrade_camera`).
        lighting_probability, contrast, brightness, gamma, noise_sigma: see :data:`FRAME_LIGHTING_PROBABILITY`,
            :data:`CONTRAST`, :data:`BRIGHTNESS`, :data:`GAMMA`, :data:`NOISE_SIGMA` (normally exposed frames).
        night_probability: a night frame (``photometry="camera"`` only): the scene's exposure gain is
            ``night_gain``; every plate is lit (a plate lamp, infrared on a retro-reflective plate) to
            ``night_plate_exposure`` of its daylight brightness (never darker than the scene); the light falls off
            from a random spot (a lamp's or headlights' pool) to ``night_falloff`` of its peak far from it; the noise
            sigma is ``night_noise_sigma``. Kept legible: a plate keeps at least ``night_plate_exposure[0] *
            night_falloff[0]`` (ROAD: 0.18) of its contrast, some 40 grey levels between black ink and a white
            plate, several times the noise.
        overexposure_probability: an over-exposed frame (``photometry="camera"`` only): washed out by a haze
            (``v * (1 - haze) + 255 * haze``, ``overexposure_haze``), then amplified by ``overexposure_gain`` and
            clipped at 255. Kept legible: the gain is capped as :data:`OVEREXPOSURE_LEGIBILITY` says.
        gaussian_blur_probability, gaussian_sigma_px: a Gaussian blur (defocus, a soft lens).
        motion_blur_probability, motion_blur_px: a motion blur: a line kernel of that length (px, integers, <=
            :data:`MAX_BLUR_KERNEL_PX`) at a random angle.
        defocus_blur_probability, defocus_radius_px: a defocus blur: a disk kernel of that radius (px,
            ``photometry="camera"`` only; diameter <= :data:`MAX_BLUR_KERNEL_PX`).
        occlusion_probability: per plate, an object in front of it (a bar or pole, a tow hook, a leaf or blob)
            that hides at most ``max_occluded_fraction`` of any character's box area (:func:`_occlude`).
        jpeg_quality: JPEG quality range of :func:`synthesize` (integers, 1-100).

    Raises:
        ValueError: a field out of range or of the wrong kind; the message names the field
            (``Conditions.max_yaw_deg must be ...``).
    """

    long_side: tuple[int, int] = IMAGE_LONG_SIDE
    aspects: tuple[tuple[int, int], ...] = IMAGE_ASPECTS
    frame_sizes: tuple[tuple[int, int], ...] = ()
    plate_count_weights: tuple[float, ...] = (1.0 - TWO_PLATES_PROBABILITY, TWO_PLATES_PROBABILITY)
    plate_width: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(PLATE_WIDTH_FRACTION), hash=False
    )
    log_uniform_width: bool = False
    projection: str = "jitter"
    max_corner_jitter: float = MAX_CORNER_JITTER
    max_rotation_deg: float = MAX_ROTATION_DEG
    max_yaw_deg: float = 35.0
    max_pitch_deg: float = 25.0
    max_roll_deg: float = 12.0
    fov_deg: tuple[float, float] = (40.0, 90.0)
    photometry: str = "classic"
    lighting_probability: float = FRAME_LIGHTING_PROBABILITY
    contrast: tuple[float, float] = CONTRAST
    brightness: tuple[float, float] = BRIGHTNESS
    gamma: tuple[float, float] = GAMMA
    noise_sigma: tuple[float, float] = NOISE_SIGMA
    night_probability: float = 0.0
    night_gain: tuple[float, float] = (0.25, 0.5)
    night_falloff: tuple[float, float] = (0.6, 0.9)
    night_plate_exposure: tuple[float, float] = (0.3, 1.0)
    night_noise_sigma: tuple[float, float] = (2.0, 7.0)
    overexposure_probability: float = 0.0
    overexposure_gain: tuple[float, float] = (1.25, 2.0)
    overexposure_haze: tuple[float, float] = (0.05, 0.25)
    gaussian_blur_probability: float = GAUSSIAN_BLUR[0]
    gaussian_sigma_px: tuple[float, float] = GAUSSIAN_BLUR[1]
    motion_blur_probability: float = MOTION_BLUR[0]
    motion_blur_px: tuple[int, int] = MOTION_BLUR[1]
    defocus_blur_probability: float = 0.0
    defocus_radius_px: tuple[float, float] = (1.0, 3.0)
    occlusion_probability: float = 0.0
    max_occluded_fraction: float = 0.3
    jpeg_quality: tuple[int, int] = JPEG_QUALITY

    def __post_init__(self) -> None:
        self._set("long_side", _checked_range("long_side", self.long_side, 16, 16384, integer=True))
        self._set("aspects", _checked_sizes("aspects", self.aspects, 1, allow_empty=False))
        self._set("frame_sizes", _checked_sizes("frame_sizes", self.frame_sizes, 16, allow_empty=True))
        try:
            weights = tuple(self.plate_count_weights)
        except TypeError:
            weights = ()
        if not weights or not all(_is_real(w) and w >= 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(
                f"Conditions.plate_count_weights must be non-negative probabilities of 1, 2, ... plates summing "
                f"to 1, got {self.plate_count_weights!r}"
            )
        self._set("plate_count_weights", tuple(float(w) for w in weights))
        if not isinstance(self.plate_width, Mapping) or set(self.plate_width) != set(spec.LAYOUTS):
            raise ValueError(
                f"Conditions.plate_width must map each of {', '.join(spec.LAYOUTS)} to a (smallest, largest) "
                f"fraction of the frame width, got {self.plate_width!r}"
            )
        widths = {k: _checked_range(f"plate_width[{k!r}]", v, 1e-3, 1.0) for k, v in self.plate_width.items()}
        self._set("plate_width", MappingProxyType(widths))
        if not isinstance(self.log_uniform_width, bool):
            raise ValueError(f"Conditions.log_uniform_width must be True or False, got {self.log_uniform_width!r}")
        for name, allowed in (("projection", _PROJECTIONS), ("photometry", _PHOTOMETRIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Conditions.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name, high in (
            ("max_corner_jitter", 0.5), ("max_rotation_deg", 45.0), ("max_yaw_deg", 75.0), ("max_pitch_deg", 75.0),
            ("max_roll_deg", 45.0),
        ):  # fmt: skip
            self._set(name, _checked_number(name, getattr(self, name), 0.0, high))
        for name, low, high, integer in (
            ("fov_deg", 1.0, 150.0, False), ("contrast", 0.0, 10.0, False), ("brightness", -255.0, 255.0, False),
            ("gamma", 0.05, 20.0, False), ("noise_sigma", 0.0, 128.0, False), ("night_gain", 0.01, 1.0, False),
            ("night_falloff", 0.0, 1.0, False), ("night_plate_exposure", 0.01, 2.0, False),
            ("night_noise_sigma", 0.0, 128.0, False), ("overexposure_gain", 1.0, 10.0, False),
            ("overexposure_haze", 0.0, 0.9, False), ("gaussian_sigma_px", 0.0, 32.0, False),
            ("motion_blur_px", 1, MAX_BLUR_KERNEL_PX, True), ("defocus_radius_px", 0.5, MAX_BLUR_KERNEL_PX / 2, False),
            ("jpeg_quality", 1, 100, True),
        ):  # fmt: skip
            self._set(name, _checked_range(name, getattr(self, name), low, high, integer=integer))
        for name in (
            "lighting_probability", "night_probability", "overexposure_probability", "gaussian_blur_probability",
            "motion_blur_probability", "defocus_blur_probability", "occlusion_probability", "max_occluded_fraction",
        ):  # fmt: skip
            self._set(name, _checked_number(name, getattr(self, name), 0.0, 1.0))
        for names in (
            ("night_probability", "overexposure_probability"),
            ("gaussian_blur_probability", "motion_blur_probability", "defocus_blur_probability"),
        ):
            if sum(getattr(self, n) for n in names) > 1.0 + 1e-9:
                raise ValueError(f"Conditions.{' + Conditions.'.join(names)} must be at most 1")
        if self.photometry == "classic":
            for name in ("night_probability", "overexposure_probability", "defocus_blur_probability"):
                if getattr(self, name) > 0:
                    raise ValueError(f"Conditions.{name} needs photometry='camera', got photometry='classic'")

    def _set(self, name: str, value: Any) -> None:
        """Store a normalised field value (the dataclass is frozen)."""
        object.__setattr__(self, name, value)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle ``plate_width`` as a dict (a read-only mapping proxy cannot be pickled), e.g. for worker
        processes."""
        return {**self.__dict__, "plate_width": dict(self.plate_width)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            self._set(name, value)
        self._set("plate_width", MappingProxyType(dict(state["plate_width"])))

    def max_plates(self) -> int:
        """Return the largest number of plates a frame may hold (``len(plate_count_weights)``)."""
        return len(self.plate_count_weights)


def _is_real(value: Any) -> bool:
    """Return whether ``value`` is a finite real number (not a bool)."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _checked_number(name: str, value: Any, low: float, high: float) -> float:
    """Return ``value`` if it is a real number in ``[low, high]``; else raise ValueError naming ``Conditions.name``."""
    if not _is_real(value) or not low <= value <= high:
        raise ValueError(f"Conditions.{name} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _checked_range(
    name: str, value: Any, low: float, high: float, *, integer: bool = False
) -> tuple[float, float] | tuple[int, int]:
    """Return ``value`` as a ``(smallest, largest)`` tuple with ``low <= smallest <= largest <= high`` (integers
    when ``integer``); else raise ValueError naming ``Conditions.name``."""
    kind = "integers" if integer else "numbers"
    try:
        lo, hi = value
    except (TypeError, ValueError):
        lo = hi = None
    ok = all(_is_real(v) and (not integer or float(v).is_integer()) for v in (lo, hi))
    if not ok or not low <= lo <= hi <= high:
        raise ValueError(
            f"Conditions.{name} must be a (smallest, largest) pair of {kind} from {low:g} to {high:g}, got {value!r}"
        )
    return (int(lo), int(hi)) if integer else (float(lo), float(hi))


def _checked_sizes(name: str, value: Any, smallest: int, *, allow_empty: bool) -> tuple[tuple[int, int], ...]:
    """Return ``value`` as ``((w, h), ...)`` of integers >= ``smallest``; else raise ValueError naming the field."""
    try:
        pairs = [tuple(pair) for pair in value]
    except TypeError:
        pairs = None
    ok = (
        pairs is not None
        and (allow_empty or bool(pairs))
        and all(
            len(pair) == 2 and all(_is_real(v) and float(v).is_integer() and v >= smallest for v in pair)
            for pair in pairs
        )
    )
    if not ok:
        what = "(width, height)" if name == "frame_sizes" else "(width, height) ratio"
        raise ValueError(
            f"Conditions.{name} must be {'a possibly empty' if allow_empty else 'a non-empty'} tuple of {what} "
            f"integer pairs >= {smallest}, got {value!r}"
        )
    return tuple((int(w), int(h)) for w, h in pairs)


#: Today's synthetic frames (the default; the constants above): byte-identical to what the synthesizer drew before
#: :class:`Conditions` existed, for the same seed.
CLASSIC: Final = Conditions()
#: Frames like a roadside or gate camera's (issue 14, "Data that looks like the road"): standard 4:3 and 16:9
#: sensor sizes from 640x480 to 1920x1080; 1-4 plates whose projected width is 3-45 % of the frame width, drawn
#: log-uniformly (as many plates of 3-6 % as of 6-12 % or 12-24 %: P(< 15 %) = ln 5 / ln 15 = 0.59), because a
#: detector's difficulty goes with the octave of the size (feature-pyramid levels are octaves) and the plates a
#: roadside camera sees are mostly 3-15 % of its frame; yaw +-35 deg, pitch +-25 deg, roll +-12 deg through a
#: pinhole camera of 40-90 deg horizontal field of view; 20 % night and 15 % over-exposed frames; Gaussian, motion
#: (up to 11 px) and defocus (radius 1-3 px) blur; an occluder on 20 % of the plates; JPEG quality 30-95.
ROAD: Final = Conditions(
    long_side=(640, 1920),  # with aspects: the frame size when a Sources sets only one of long_side, aspects
    aspects=((4, 3), (16, 9)),
    frame_sizes=(
        (640, 480), (800, 600), (1024, 768), (1280, 960), (1440, 1080),
        (960, 540), (1280, 720), (1600, 900), (1920, 1080),
    ),
    plate_count_weights=(0.4, 0.3, 0.2, 0.1),
    plate_width={"one_line": (0.03, 0.45), "two_line": (0.03, 0.45)},
    log_uniform_width=True,
    projection="pinhole",
    photometry="camera",
    night_probability=0.2,
    overexposure_probability=0.15,
    gaussian_blur_probability=0.2,
    motion_blur_probability=0.2,
    motion_blur_px=(3, MAX_BLUR_KERNEL_PX),
    defocus_blur_probability=0.15,
    occlusion_probability=0.2,
    jpeg_quality=(30, 95),
)  # fmt: skip
#: The presets by name (the ``--conditions`` of ``python -m dataset_tools synth`` and
#: :data:`alpr.defaults.BOOTSTRAP_CONDITIONS`).
PRESETS: Final[dict[str, Conditions]] = {"classic": CLASSIC, "road": ROAD}


#: Joins preset names into a mixture (``classic+road``: :func:`mixture`).
MIX_SEPARATOR: Final = "+"


def preset(name: str) -> Conditions:
    """The :data:`PRESETS` entry called ``name``.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic conditions {name!r}; expected one of {', '.join(PRESETS)}") from None


def mixture(name: str, n: int) -> list[tuple[str, Conditions, int, int]]:
    """How ``n`` samples are drawn under ``name``: one preset (``road``) or several joined by
    :data:`MIX_SEPARATOR` (``classic+road``), which share the samples evenly in the order named (the first ones
    take the remainder).

    Returns:
        ``[(preset name, conditions, first sample index, count), ...]``: consecutive index ranges covering
        ``0 .. n - 1``, to pass to :func:`synthesize` as ``first`` and ``n``.

    Raises:
        ValueError: an empty or unknown preset name, a preset named twice, or a negative ``n``; the message lists
            the valid names.
    """
    _check_non_negative("n", n)
    names = name.split(MIX_SEPARATOR)
    if len(set(names)) != len(names):
        raise ValueError(f"synthetic conditions {name!r} name a preset twice")
    drawn = [(part, preset(part)) for part in names]
    out, first = [], 0
    for k, (part, conditions) in enumerate(drawn):
        count = n // len(drawn) + (k < n % len(drawn))
        out.append((part, conditions, first, count))
        first += count
    return out


def render_sample(
    index: int,
    seed: int,
    layouts: Sequence[str] = spec.LAYOUTS,
    sources: Sources | None = None,
    conditions: Conditions = CLASSIC,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render synthetic sample ``index`` of the run seeded with ``seed``.

    Args:
        index: the sample's index (>= 0); it names the file (:func:`sample_stem`) and, with ``seed``, fully
            determines the sample.
        seed: the run's seed (>= 0).
        layouts: plate layouts to draw from (:data:`alpr.spec.LAYOUTS`: ``one_line``, ``two_line``).
        sources: fonts, photographs and image sizes to draw from instead of the defaults (:class:`Sources`).
        conditions: what the frame looks like (:data:`CLASSIC`, :data:`ROAD` or other :class:`Conditions`).

    Returns:
        ``(image, labelme)``: an RGB ``uint8`` array of shape ``(H, W, 3)`` (size from ``conditions`` or
        ``sources``; :data:`CLASSIC`: long side 512-800 px) before JPEG compression, and its labelme 5.x dict
        (``imagePath`` = ``<stem>.jpg``, ``imageData`` null) holding 1 to ``conditions.max_plates()`` plate
        polygons (4 corners, clockwise from the plate's top-left) and one polygon per character (its ink box's 4
        corners), points in image pixels rounded to 2 decimals; ``group_id`` numbers the plates from 0.

    Raises:
        ValueError: ``index`` or ``seed`` is negative, ``layouts`` is empty or names an unknown layout, or
            ``conditions`` is not a :class:`Conditions`.
    """
    _check_non_negative("index", index)
    _check_non_negative("seed", seed)
    layouts = _checked_layouts(layouts)
    _check_conditions(conditions)
    rng = _sample_rng(seed, index, stream=0)
    sources = sources or Sources()
    width, height = _frame_size(rng, sources, conditions)
    image = _random_background(rng, width, height, sources.photo_list())
    exposure = _random_exposure(rng, conditions) if conditions.photometry == "camera" else _Exposure("normal")
    shapes: list[dict[str, Any]] = []
    placed: list[np.ndarray] = []
    plate_quads: list[np.ndarray] = []
    char_quads: list[np.ndarray] = []
    for _ in range(_random_plate_count(rng, conditions)):
        layout = str(rng.choice(layouts))
        placement = _place_plate(rng, layout, width, height, placed, conditions)
        if placement is None:
            continue
        plate = _render_flat_plate(
            rng, layout, random_plate_text(rng), placement.width, sources.font_list(), distort=sources.distort_glyphs
        )
        if exposure.kind == "night":  # lit more than the scene; > 255 until the exposure gain scales it down
            plate.image[:] *= max(1.0, rng.uniform(*conditions.night_plate_exposure) / exposure.gain)
        image = _draw_plate(rng, image, plate, placement)
        group_id = len(placed)  # plates that found no spot leave no gap in the numbering
        placed.append(placement.holder if placement.holder is not None else placement.quad)
        shapes.extend(_plate_shapes(plate, placement.quad, group_id, width, height))
        plate_quads.append(placement.quad)
        char_quads.extend(_char_quads(plate, placement.quad))
    if conditions.occlusion_probability > 0:
        for quad in plate_quads:
            if rng.random() < conditions.occlusion_probability:
                _occlude(rng, image, quad, char_quads, conditions.max_occluded_fraction)
    if conditions.photometry == "camera":
        frame = _degrade_camera(rng, image, conditions, exposure)
    else:
        frame = _degrade(rng, image, conditions)
    return frame, _labelme_dict(shapes, f"{sample_stem(index)}.jpg", width, height)


def synthesize(
    out_dir: Path,
    n: int,
    seed: int = 0,
    layouts: Sequence[str] = spec.LAYOUTS,
    progress: bool = True,
    sources: Sources | None = None,
    conditions: Conditions = CLASSIC,
    first: int = 0,
) -> list[Path]:
    """Write ``n`` synthetic samples into ``out_dir`` (created if missing) and return their JSON paths.

    Samples ``first .. first + n - 1`` are drawn. Sample ``i`` is ``<out_dir>/synth_<i:06d>.jpg`` (JPEG quality
    drawn from ``conditions.jpeg_quality``; :data:`CLASSIC`: 40-95) with its labelme file
    ``<out_dir>/synth_<i:06d>.json`` beside it (see :func:`render_sample`); existing files of the same names are
    overwritten. Sample ``i`` depends only on ``(seed, i)`` and the conditions, not on ``n`` or ``first``, so
    several calls with consecutive ranges (:func:`mixture`) fill one folder with a mixture of conditions.

    Args:
        out_dir: output folder.
        n: number of samples (>= 0).
        seed: the run's seed (>= 0).
        layouts: plate layouts to draw from (:data:`alpr.spec.LAYOUTS`).
        progress: show a tqdm progress bar.
        sources: fonts, photographs and image sizes instead of the defaults (:class:`Sources`).
        conditions: what the frames look like (:data:`CLASSIC`, :data:`ROAD` or other :class:`Conditions`).
        first: the index of the first sample.

    Raises:
        ValueError: ``n``, ``seed`` or ``first`` is negative, ``layouts`` is empty or names an unknown layout, or
            ``conditions`` is not a :class:`Conditions`.
    """
    from tqdm import tqdm

    _check_non_negative("n", n)
    _check_non_negative("seed", seed)
    _check_non_negative("first", first)
    layouts = _checked_layouts(layouts)
    _check_conditions(conditions)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for index in tqdm(range(first, first + n), desc="synth", unit="img", disable=not progress):
        image, labelme = render_sample(index, seed, layouts, sources, conditions)
        stem = sample_stem(index)
        low, high = conditions.jpeg_quality
        quality = int(_sample_rng(seed, index, stream=1).integers(low, high + 1))
        Image.fromarray(image).save(out_dir / f"{stem}.jpg", format="JPEG", quality=quality)
        json_path = out_dir / f"{stem}.json"
        json_path.write_text(json.dumps(labelme, indent=2) + "\n", encoding="utf-8")
        written.append(json_path)
    return written


# ---------------------------------------------------------------------------------------------- argument checks


def _check_non_negative(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _checked_layouts(layouts: Sequence[str]) -> tuple[str, ...]:
    """Return ``layouts`` as a tuple; raise ValueError if it is empty, a bare string or names an unknown layout."""
    if isinstance(layouts, str):
        raise ValueError(f"layouts must be a sequence of layout names, got the string {layouts!r}")
    layouts = tuple(layouts)
    if not layouts:
        raise ValueError(f"layouts must name at least one of {', '.join(spec.LAYOUTS)}")
    for layout in layouts:
        if layout not in spec.LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(spec.LAYOUTS)}")
    return layouts


def _check_conditions(conditions: Any) -> None:
    """Raise ValueError unless ``conditions`` is a :class:`Conditions`."""
    if not isinstance(conditions, Conditions):
        raise ValueError(f"conditions must be a Conditions (e.g. synth.CLASSIC or synth.ROAD), got {conditions!r}")


def _plate_label(layout: str) -> str:
    """Return the plate outline label of ``layout`` (the inverse of :data:`alpr.spec.LAYOUT_OF_LABEL`)."""
    return next(label for label, name in spec.LAYOUT_OF_LABEL.items() if name == layout)


def _sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Return the generator of sample ``index``: ``stream`` 0 draws the picture, 1 the JPEG quality."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index), stream)))


# ------------------------------------------------------------------------------------------- photos and fonts


@functools.lru_cache(maxsize=1)
def photo_paths() -> tuple[Path, ...]:
    """Return the background photographs found in the installed scikit-image and matplotlib packages.

    scikit-image files are those of :data:`SKIMAGE_PHOTOS` present in ``skimage/data``; matplotlib files are the
    :data:`PHOTO_SUFFIXES` images under ``mpl-data/sample_data``. Sorted within each package.

    Raises:
        RuntimeError: no photograph was found.
    """
    import matplotlib
    import skimage

    skimage_dir = Path(skimage.__file__).parent / "data"
    found = [skimage_dir / name for name in SKIMAGE_PHOTOS if (skimage_dir / name).is_file()]
    sample_dir = Path(matplotlib.get_data_path()) / "sample_data"
    found += sorted(p for p in sample_dir.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not found:
        raise RuntimeError(f"no background photographs found in {skimage_dir} or {sample_dir}")
    return tuple(found)


@functools.cache
def _load_photo(path: Path) -> np.ndarray:
    """Return the photo at ``path`` as a read-only RGB uint8 array (greyscale expanded, alpha over white)."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            rgb = img.convert("RGB")
    array = np.asarray(rgb, dtype=np.uint8).copy()
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1)
def font_paths() -> tuple[str, ...]:
    """Return the plate faces that draw 0-9 and A-E as distinct, upright, lining glyphs, sorted.

    Candidates are matplotlib's ``mpl-data/fonts/ttf/*.ttf``, the TTF files of the installed
    :data:`FONT_PACKAGES` (minus names with an :data:`EXCLUDED_FONT_MARKERS` marker) and OpenCV's
    :data:`HERSHEY_FACES` (named ``hershey:<face>``); each is then checked by rendering (see
    :func:`_font_is_usable`).

    Raises:
        RuntimeError: no usable font was found.
    """
    import importlib.util

    import matplotlib

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    files = list(font_dir.glob("*.ttf"))
    for package, pattern in FONT_PACKAGES.items():
        found = importlib.util.find_spec(package)
        if found is not None and found.submodule_search_locations:
            for location in found.submodule_search_locations:
                files.extend(Path(location).glob(pattern))
    candidates = sorted(
        [str(p) for p in files if not any(marker in p.name for marker in EXCLUDED_FONT_MARKERS)] + list(HERSHEY_FACES)
    )
    usable = tuple(path for path in candidates if _font_is_usable(path))
    if not usable:
        raise RuntimeError(f"no usable plate font in {font_dir}")
    return usable


def _font_is_usable(path: str) -> bool:
    """Return whether the font at ``path`` renders every plate character with ink, all glyphs distinct from each
    other and from the missing-glyph box, and with lining heights (tallest / shortest <= 1.25)."""
    try:
        inks = [_glyph_ink(path, char, 0) for char in spec.CHARACTERS]
    except OSError:
        return False
    if any(ink.size == 0 for ink in inks):
        return False
    signatures = {(ink.shape, ink.tobytes()) for ink in inks}
    missing = _glyph_ink(path, "\U0010fffd", 0)
    if len(signatures) != len(inks) or (missing.shape, missing.tobytes()) in signatures:
        return False
    heights = [ink.shape[0] for ink in inks]
    return max(heights) <= 1.25 * min(heights)


@functools.cache
def _font(path: str) -> ImageFont.FreeTypeFont:
    """Return the font at ``path`` at the reference size, with the basic (deterministic) layout engine."""
    return ImageFont.truetype(path, _REF_FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=8192)
def _glyph_ink(path: str, char: str, stroke: int) -> np.ndarray:
    """Return ``char`` drawn in the font at ``path`` (reference size, outline widened by ``stroke`` px) as a
    read-only uint8 coverage mask cropped to its ink (coverage >= :data:`_INK_THRESHOLD`); empty if no ink.

    A :data:`HERSHEY_FACES` name is drawn with ``cv2.putText`` at about the reference height, ``1 + 2 * stroke``
    px thick (a line of thickness t widens each side by t/2, as an outline widened by ``stroke`` does).
    """
    size = _REF_FONT_SIZE
    if path in HERSHEY_FACES:
        face = HERSHEY_FACES[path]
        (_, text_h), _ = cv2.getTextSize("0", face, 1.0, 1)
        canvas_np = np.zeros((3 * size, 3 * size), np.uint8)
        cv2.putText(canvas_np, char, (size, 2 * size), face, size / text_h, 255, 1 + 2 * stroke, cv2.LINE_AA)
        coverage = canvas_np
    else:
        canvas = Image.new("L", (3 * size, 3 * size), 0)
        draw = ImageDraw.Draw(canvas)
        draw.text((size, size), char, font=_font(path), fill=255, stroke_width=stroke, stroke_fill=255)
        coverage = np.asarray(canvas)
    return _ink_crop(coverage)


def _ink_crop(coverage: np.ndarray) -> np.ndarray:
    """Return uint8 ``coverage`` cropped to its ink (coverage >= :data:`_INK_THRESHOLD`), read-only; empty if
    there is no ink."""
    ink = coverage >= _INK_THRESHOLD
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        crop = np.zeros((0, 0), np.uint8)
    else:
        crop = coverage[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
    crop.setflags(write=False)
    return crop


def _distort_glyph(rng: np.random.Generator, ink: np.ndarray, shear: float) -> np.ndarray:
    """Return a distorted copy of glyph coverage ``ink`` (uint8, h x w, cropped to its ink), cropped again.

    Applies the plate's horizontal ``shear`` (x moves by ``shear * (centre_y - y)``: positive leans right), then
    with the :data:`GLYPH_ELASTIC` probability an elastic distortion (Gaussian-smoothed uniform displacements of
    up to that fraction of the height, smoothing :data:`GLYPH_ELASTIC_SMOOTHING`), then with the
    :data:`GLYPH_WEIGHT` probability a dilation or erosion by up to that fraction of the height. An erosion that
    would erase a stroke is skipped. The glyph's identity is kept: the changes are a few percent of its height.
    """
    h, w = ink.shape
    pad = int(math.ceil(abs(shear) * h / 2 + GLYPH_ELASTIC[1] * h * 2 + GLYPH_WEIGHT[1] * h)) + 2
    canvas = cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0).astype(np.float32)
    ch, cw = canvas.shape
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    map_x = xx + shear * (yy - ch / 2.0)  # sample from the unsheared glyph
    map_y = yy.copy()
    if rng.random() < GLYPH_ELASTIC[0]:
        amplitude = rng.uniform(0.0, GLYPH_ELASTIC[1]) * h
        sigma = GLYPH_ELASTIC_SMOOTHING * h
        for field in (map_x, map_y):
            noise = cv2.GaussianBlur(rng.uniform(-1.0, 1.0, size=(ch, cw)).astype(np.float32), (0, 0), sigma)
            field += noise * (amplitude / max(float(np.abs(noise).max()), 1e-6))
    warped = cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if rng.random() < GLYPH_WEIGHT[0]:
        radius = int(round(rng.uniform(0.0, GLYPH_WEIGHT[1]) * h))
        if radius > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            if rng.random() < 0.5:
                warped = cv2.dilate(warped, kernel)
            else:
                eroded = cv2.erode(warped, kernel)
                if (eroded >= _INK_THRESHOLD).sum() >= 0.35 * (warped >= _INK_THRESHOLD).sum():
                    warped = eroded
    distorted = _ink_crop(np.clip(warped, 0, 255).astype(np.uint8))
    return distorted if distorted.size else ink


@functools.cache
def _stroke_ratio(path: str) -> tuple[float, float]:
    """Return ``(stroke width / glyph height, median glyph height in px)`` of the font at reference size.

    The stroke width of a glyph is estimated as 2 * ink area / outline length (a stroke of width w and length L
    has area w*L and outline about 2L); the median over the plate characters is returned.
    """
    ratios, heights = [], []
    for char in spec.CHARACTERS:
        ink = (_glyph_ink(path, char, 0) >= _INK_THRESHOLD).astype(np.uint8)
        contours, _ = cv2.findContours(ink, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        outline = sum(cv2.arcLength(c, True) for c in contours)
        ratios.append(2.0 * float(ink.sum()) / max(outline, 1.0) / ink.shape[0])
        heights.append(ink.shape[0])
    return float(np.median(ratios)), float(np.median(heights))


def _random_stroke(rng: np.random.Generator, path: str) -> int:
    """Return an outline widening (reference px) that brings the font's strokes into the legible weight range."""
    ratio, height = _stroke_ratio(path)
    target = rng.uniform(_MIN_STROKE_RATIO, _MAX_STROKE_RATIO)
    return max(0, int(round((target - ratio) * height / 2.0)))


# --------------------------------------------------------------------------------------------------- background


def _random_image_size(
    rng: np.random.Generator, long_sides: tuple[int, int], aspects: tuple[tuple[int, int], ...]
) -> tuple[int, int]:
    """Return a random ``(width, height)``: long side in ``long_sides`` (inclusive), aspect from ``aspects``."""
    long_side = int(rng.integers(long_sides[0], long_sides[1] + 1))
    aspect_w, aspect_h = aspects[int(rng.integers(len(aspects)))]
    return long_side, int(round(long_side * aspect_h / aspect_w))


def _frame_size(rng: np.random.Generator, sources: Sources, conditions: Conditions) -> tuple[int, int]:
    """Return a random frame ``(width, height)``: from ``conditions.frame_sizes`` when set (and ``sources`` sets no
    size), else a long side and an aspect from ``sources`` or, where it sets none, from ``conditions``."""
    if conditions.frame_sizes and sources.long_side is None and sources.aspects is None:
        return conditions.frame_sizes[int(rng.integers(len(conditions.frame_sizes)))]
    return _random_image_size(rng, sources.long_side or conditions.long_side, sources.aspects or conditions.aspects)


def _random_plate_count(rng: np.random.Generator, conditions: Conditions) -> int:
    """Return how many plates to try to place: one uniform draw split as :attr:`Conditions.plate_count_weights`
    says (largest count first, so that the classic ``2 if u < 0.3 else 1`` is kept)."""
    u = rng.random()
    threshold = 0.0
    for count in range(len(conditions.plate_count_weights), 1, -1):
        threshold += conditions.plate_count_weights[count - 1]
        if u < threshold:
            return count
    return 1


def _random_background(rng: np.random.Generator, width: int, height: int, photos: tuple[Path, ...]) -> np.ndarray:
    """Return a float32 RGB ``(height, width, 3)`` background with a random per-channel gain: one photo (random
    crop, resized, maybe flipped), a collage of 2-4 photo tiles (:data:`COLLAGE_PROBABILITY`) or a drawn scene
    (:data:`DRAWN_BACKGROUND_PROBABILITY`)."""
    kind = rng.random()
    if kind < DRAWN_BACKGROUND_PROBABILITY:
        background = _drawn_background(rng, width, height)
    elif kind < DRAWN_BACKGROUND_PROBABILITY + COLLAGE_PROBABILITY:
        background = _photo_crop(rng, width, height, photos)
        if rng.random() < 0.5:  # split vertically into 2-3 columns
            cuts = np.sort(rng.uniform(0.2, 0.8, size=int(rng.integers(1, 3)))) * width
            for x0, x1 in zip(cuts, np.append(cuts[1:], width)):
                x0, x1 = int(x0), int(x1)
                if x1 - x0 >= 16:
                    background[:, x0:x1] = _photo_crop(rng, x1 - x0, height, photos)
        else:  # split horizontally into 2-3 rows
            cuts = np.sort(rng.uniform(0.2, 0.8, size=int(rng.integers(1, 3)))) * height
            for y0, y1 in zip(cuts, np.append(cuts[1:], height)):
                y0, y1 = int(y0), int(y1)
                if y1 - y0 >= 16:
                    background[y0:y1] = _photo_crop(rng, width, y1 - y0, photos)
    else:
        background = _photo_crop(rng, width, height, photos)
    gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    background = cv2.multiply(background, (*(float(g) for g in gain), 0.0))  # float32 products, as numpy's
    return np.minimum(background, 255.0, out=background)  # photos and drawn scenes are >= 0 already


def _photo_crop(rng: np.random.Generator, width: int, height: int, paths: tuple[Path, ...]) -> np.ndarray:
    """Return a float32 RGB ``(height, width, 3)`` random crop of a random photo of ``paths``, resized, maybe
    flipped."""
    photo = _load_photo(paths[int(rng.integers(len(paths)))])
    ph, pw = photo.shape[:2]
    crop_w = min(pw, ph * width / height) * rng.uniform(0.5, 1.0)
    crop_h = crop_w * height / width
    x0 = rng.uniform(0, pw - crop_w)
    y0 = rng.uniform(0, ph - crop_h)
    # At least 2 source pixels each way (a thin collage strip of a wide frame would otherwise crop nothing).
    x0, y0 = min(int(x0), pw - 2), min(int(y0), ph - 2)
    crop = photo[y0 : max(int(y0 + crop_h), y0 + 2), x0 : max(int(x0 + crop_w), x0 + 2)]
    interpolation = cv2.INTER_AREA if crop.shape[1] > width else cv2.INTER_LINEAR
    background = cv2.resize(crop, (width, height), interpolation=interpolation)
    if rng.random() < 0.5:
        background = cv2.flip(background, 1)
    if rng.random() < 0.1:
        background = cv2.flip(background, 0)
    return background.astype(np.float32)  # flipped in uint8: a quarter of the memory traffic of float32


def _drawn_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Return a float32 RGB ``(height, width, 3)`` drawn scene: a vertical colour gradient, 5-25 filled
    rectangles and 3-15 lines in random colours (walls, windows, car bodies, road marks), then a slight blur."""
    top, bottom = rng.uniform(0, 255, size=3), rng.uniform(0, 255, size=3)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.ascontiguousarray(np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).astype(np.float32))
    for _ in range(int(rng.integers(5, 26))):
        x0, x1 = np.sort(rng.uniform(0, width, size=2)).astype(int)
        y0, y1 = np.sort(rng.uniform(0, height, size=2)).astype(int)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), [float(v) for v in rng.uniform(0, 255, 3)], -1)
    for _ in range(int(rng.integers(3, 16))):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, p0, p1, [float(v) for v in rng.uniform(0, 255, 3)], int(rng.integers(1, 6)))
    return cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.5, 2.0))


# ------------------------------------------------------------------------------------------------------ colours


def _random_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(plate RGB, text RGB)`` float arrays: white/black, yellow/black, green/white or a random
    light/dark pair whose luminances differ by at least 0.45 (of 1)."""
    kind = rng.choice(4, p=[0.35, 0.2, 0.15, 0.3])
    jitter = rng.uniform(-12, 12, size=3)
    if kind == 0:
        plate, text = np.full(3, rng.uniform(225, 255)) + jitter / 2, np.full(3, rng.uniform(0, 45))
    elif kind == 1:
        plate, text = np.array([235.0, 195.0, 35.0]) + jitter, np.full(3, rng.uniform(0, 40))
    elif kind == 2:
        plate, text = np.array([35.0, 115.0, 65.0]) + jitter, np.full(3, rng.uniform(225, 255))
    else:
        plate, text = _random_contrasting_pair(rng)
    return np.clip(plate, 0, 255), np.clip(text, 0, 255)


def _luminance(rgb: np.ndarray) -> float:
    """Return the relative luminance (0-1, Rec. 601 weights) of an RGB colour in [0, 255]."""
    return float(rgb @ np.array([0.299, 0.587, 0.114])) / 255.0


def _random_contrasting_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return a random (plate, text) colour pair, one light and one dark, with luminance difference >= 0.45."""
    while True:
        light = rng.uniform(150, 255, size=3)
        dark = rng.uniform(0, 110, size=3)
        if _luminance(light) - _luminance(dark) >= 0.45:
            return (light, dark) if rng.random() < 0.6 else (dark, light)


# ------------------------------------------------------------------------------------------------- flat plates


def _render_flat_plate(
    rng: np.random.Generator, layout: str, text: str, width: float, fonts: tuple[str, ...], distort: bool = True
) -> _FlatPlate:
    """Draw plate ``text`` in ``layout`` flat, about ``width`` px wide (aspect from :data:`spec.PLATE_SIZE_MM`).

    One face of ``fonts`` at a random weight; every glyph distorted by :func:`_distort_glyph` when ``distort``.
    Returns the plate image and the characters' tight ink boxes in reading order.
    """
    mm_w, mm_h = spec.PLATE_SIZE_MM[layout]
    canvas_w = max(int(round(width)), 24)
    canvas_h = max(int(round(canvas_w * mm_h / mm_w * rng.uniform(0.95, 1.05))), 8)
    font = fonts[int(rng.integers(len(fonts)))]
    stroke = _random_stroke(rng, font)
    inks = [_glyph_ink(font, char, stroke) for char in text]
    if distort:
        shear = rng.uniform(-GLYPH_SHEAR[1], GLYPH_SHEAR[1]) if rng.random() < GLYPH_SHEAR[0] else 0.0
        inks = [_distort_glyph(rng, ink, shear) for ink in inks]
    ink_layer = np.zeros((canvas_h, canvas_w), np.float32)
    inner = _draw_border(rng, ink_layer)
    if _plate_label(layout) == spec.PLATE_ONE_LINE:
        boxes = _layout_one_line(rng, inks, inner)
    else:
        boxes = _layout_two_line(rng, inks, inner)
    for ink, box in zip(inks, boxes):
        _paste_ink(ink_layer, ink, box)
    plate_rgb, text_rgb = _random_colours(rng)
    light = _random_lighting(rng, canvas_h, canvas_w, strength=0.35)[..., None]
    alpha = ink_layer[..., None]
    image = (plate_rgb * (1.0 - alpha) + text_rgb * alpha) * light
    image = image.astype(np.float32)
    if _plate_label(layout) == spec.PLATE_TWO_LINE and rng.random() < 0.5:
        _draw_bolts(rng, image, boxes[:3])
    return _FlatPlate(layout, text, np.clip(image, 0, 255), tuple(boxes))


def _draw_border(rng: np.random.Generator, ink_layer: np.ndarray) -> tuple[float, float, float, float]:
    """Maybe draw a rectangular border into ``ink_layer``; return the free inner area ``(x0, y0, x1, y1)``."""
    h, w = ink_layer.shape
    inset = rng.uniform(0.02, 0.05) * h
    if rng.random() < 0.6:
        thickness = max(1, int(round(rng.uniform(0.025, 0.05) * h)))
        x0, y0 = int(round(inset)), int(round(inset))
        x1, y1 = w - 1 - x0, h - 1 - y0
        for t in range(thickness):
            ink_layer[y0 + t, x0 + t : x1 - t + 1] = 1.0
            ink_layer[y1 - t, x0 + t : x1 - t + 1] = 1.0
            ink_layer[y0 + t : y1 - t + 1, x0 + t] = 1.0
            ink_layer[y0 + t : y1 - t + 1, x1 - t] = 1.0
        inset += thickness + 0.03 * h
    return inset, inset, w - inset, h - inset


def _layout_one_line(
    rng: np.random.Generator, inks: list[np.ndarray], inner: tuple[float, float, float, float]
) -> list[tuple[float, float, float, float]]:
    """Place ``12A 3456`` on one line inside ``inner``; return the 7 integer ink boxes."""
    x0, y0, x1, y1 = inner
    glyph_h = rng.uniform(0.80, 0.95) * (y1 - y0)
    margin = rng.uniform(0.01, 0.04) * (x1 - x0)
    top = y0 + rng.uniform(0.0, 1.0) * (y1 - y0 - glyph_h)
    return _layout_line(rng, inks, x0 + margin, x1 - margin, top, glyph_h, group_break=3)


def _layout_two_line(
    rng: np.random.Generator, inks: list[np.ndarray], inner: tuple[float, float, float, float]
) -> list[tuple[float, float, float, float]]:
    """Place ``12A`` (smaller) above ``3456`` (larger) inside ``inner``; return the 7 integer ink boxes."""
    x0, y0, x1, y1 = inner
    free_h, free_w = y1 - y0, x1 - x0
    lower_h = rng.uniform(0.48, 0.55) * free_h
    upper_h = rng.uniform(0.6, 0.75) * lower_h
    spaces = rng.uniform(0.3, 1.0, size=3)
    spaces *= (free_h - lower_h - upper_h) / spaces.sum()
    upper_top = y0 + spaces[0]
    lower_top = upper_top + upper_h + spaces[1]
    upper_w = rng.uniform(0.45, 0.7) * free_w
    upper_x0 = x0 + rng.uniform(0.35, 0.65) * (free_w - upper_w)
    lower_margin = rng.uniform(0.02, 0.06) * free_w
    upper = _layout_line(rng, inks[:3], upper_x0, upper_x0 + upper_w, upper_top, upper_h, group_break=None)
    lower = _layout_line(rng, inks[3:], x0 + lower_margin, x1 - lower_margin, lower_top, lower_h, group_break=None)
    return upper + lower


def _layout_line(
    rng: np.random.Generator,
    inks: list[np.ndarray],
    left: float,
    right: float,
    top: float,
    glyph_h: float,
    group_break: int | None,
) -> list[tuple[float, float, float, float]]:
    """Lay glyphs left to right between ``left`` and ``right``, all ``glyph_h`` tall from ``top``.

    Glyphs keep their aspect times a random condensing factor, separated by a random gap (a wider one before
    index ``group_break``); the line is squeezed horizontally if it is too wide and placed at a random offset
    if it is narrower. Returns integer ``(x0, y0, x1, y1)`` boxes.
    """
    condense = rng.uniform(0.65, 1.1)
    widths = np.array([ink.shape[1] / ink.shape[0] * glyph_h * condense for ink in inks])
    gaps = np.full(len(inks) - 1, rng.uniform(0.05, 0.18) * glyph_h)
    if group_break is not None:
        gaps[group_break - 1] += rng.uniform(0.15, 0.45) * glyph_h
    total = widths.sum() + gaps.sum()
    squeeze = min(1.0, (right - left) / total)
    widths, gaps = widths * squeeze, gaps * squeeze
    x = left + rng.uniform(0.4, 0.6) * max(0.0, (right - left) - total * squeeze)
    y0, y1 = int(round(top)), int(round(top + glyph_h))
    boxes = []
    for i, w in enumerate(widths):
        x0 = int(round(x))
        boxes.append((float(x0), float(y0), float(max(x0 + 1, int(round(x + w)))), float(max(y0 + 1, y1))))
        x += w + (gaps[i] if i < len(gaps) else 0.0)
    return boxes


def _paste_ink(ink_layer: np.ndarray, ink: np.ndarray, box: tuple[float, float, float, float]) -> None:
    """Resize ``ink`` (uint8 coverage) to fill the integer ``box`` and merge it into ``ink_layer`` (0-1)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    size = (x1 - x0, y1 - y0)
    interpolation = cv2.INTER_AREA if size[1] < ink.shape[0] else cv2.INTER_LINEAR
    glyph = cv2.resize(ink, size, interpolation=interpolation).astype(np.float32) / 255.0
    region = ink_layer[y0:y1, x0:x1]
    np.maximum(region, glyph, out=region)


def _draw_bolts(rng: np.random.Generator, image: np.ndarray, upper: list[tuple[float, float, float, float]]) -> None:
    """Draw two mounting bolts left and right of the upper line of a two-line plate, where there is room."""
    h, w = image.shape[:2]
    radius = max(1.0, rng.uniform(0.03, 0.05) * h)
    left_end, right_start = upper[0][0], upper[-1][2]
    cy = (upper[0][1] + upper[0][3]) / 2.0
    colour = np.full(3, rng.uniform(90, 200), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    for cx in (left_end / 2.0, (right_start + w) / 2.0):
        if min(abs(cx - left_end), abs(cx - right_start)) > 2 * radius and 2 * radius < cx < w - 2 * radius:
            cover = np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0.0, 1.0)[..., None]
            image[:] = image * (1.0 - cover) + colour * cover


def _random_lighting(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """Return a float32 ``(h, w)`` brightness multiplier: maybe a linear gradient, maybe a soft-edged shadow."""
    light = np.ones((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) / w + yy * math.sin(angle) / h
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        low = 1.0 - rng.uniform(0.0, strength)
        light *= low + (1.0 + rng.uniform(0.0, strength / 2) - low) * t
    if rng.random() < 0.35:
        angle = rng.uniform(0, 2 * math.pi)
        px, py = rng.uniform(0, w), rng.uniform(0, h)
        distance = (xx - px) * math.cos(angle) + (yy - py) * math.sin(angle)
        softness = rng.uniform(0.02, 0.2) * min(h, w) + 1.0
        light *= 1.0 - rng.uniform(0.2, 0.5) * 0.5 * (1.0 + np.tanh(distance / (2.0 * softness)))
    return light


# ---------------------------------------------------------------------------------------------------- placement


def _place_plate(
    rng: np.random.Generator,
    layout: str,
    width: int,
    height: int,
    placed: list[np.ndarray],
    conditions: Conditions = CLASSIC,
) -> _Placement | None:
    """Find a random placement of a ``layout`` plate inside the image, clear of the ``placed`` quads.

    The plate's width fraction is drawn from :attr:`Conditions.plate_width` (uniformly, or log-uniformly with
    :attr:`Conditions.log_uniform_width`; the upper bound shrinks after each failed try); the plate is posed as
    :attr:`Conditions.projection` says (:func:`_random_quad` or :func:`_pinhole_quad`), maybe given a holder,
    shrunk to fit and moved to a random free spot. Returns None when no spot is found in
    :data:`_MAX_PLACEMENT_TRIES` tries.
    """
    low, high = conditions.plate_width[layout]
    mm_w, mm_h = spec.PLATE_SIZE_MM[layout]
    gap = PLATE_GAP_FRACTION * width
    pinhole = conditions.projection == "pinhole"
    for attempt in range(_MAX_PLACEMENT_TRIES):
        top = low + (high - low) * 0.9**attempt
        if conditions.log_uniform_width:
            plate_w = math.exp(rng.uniform(math.log(low), math.log(top))) * width
        else:
            plate_w = rng.uniform(low, top) * width
        if pinhole:
            quad = _pinhole_quad(rng, layout, plate_w, width, conditions)
            holder = _plane_holder_quad(rng, quad) if rng.random() < 0.4 else None
        else:
            quad = _random_quad(rng, plate_w, plate_w * mm_h / mm_w, conditions)
            holder = _holder_quad(rng, quad) if rng.random() < 0.4 else None
        outer = holder if holder is not None else quad
        scale = _fit_scale(outer, width, height)
        quad, outer, plate_w = quad * scale, outer * scale, plate_w * scale
        if pinhole and plate_w < low * width:  # shrunk out of the drawn size range: try again
            continue
        lo = outer.min(axis=0)
        hi = outer.max(axis=0)
        span = hi - lo
        offset = np.array([rng.uniform(0, width - 2 * BORDER_MARGIN_PX - span[0]),
                           rng.uniform(0, height - 2 * BORDER_MARGIN_PX - span[1])])  # fmt: skip
        shift = BORDER_MARGIN_PX + offset - lo
        if not any(_boxes_overlap(outer + shift, other, gap) for other in placed):
            render_w = _flat_width(quad, mm_w / mm_h) if pinhole else float(plate_w)
            return _Placement(quad + shift, None if holder is None else outer + shift, render_w)
    return None


def _random_quad(
    rng: np.random.Generator, plate_w: float, plate_h: float, conditions: Conditions = CLASSIC
) -> np.ndarray:
    """Return a ``plate_w`` x ``plate_h`` plate's corners (TL, TR, BR, BL) around the origin, in perspective and
    rotated by up to :attr:`Conditions.max_rotation_deg` (:data:`MAX_ROTATION_DEG`).

    Perspective: each corner moves vertically by up to :attr:`Conditions.max_corner_jitter`
    (:data:`MAX_CORNER_JITTER`) of the plate's height, each vertical edge horizontally by up to that fraction of
    its width (foreshortening), and each corner by a little independent shear (a third of that fraction of the
    height).
    """
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [plate_w / 2, plate_h / 2]
    jitter = rng.uniform(0.0, conditions.max_corner_jitter)
    edge_dx = rng.uniform(-jitter, jitter, size=2) * plate_w
    half[:, 0] += edge_dx[[0, 1, 1, 0]] + rng.uniform(-jitter, jitter, size=4) * plate_h / 3
    half[:, 1] += rng.uniform(-jitter, jitter, size=4) * plate_h
    max_rotation = conditions.max_rotation_deg
    angle = math.radians(rng.uniform(-max_rotation, max_rotation))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return half @ rotation.T


def _pinhole_quad(
    rng: np.random.Generator, layout: str, plate_w: float, frame_w: int, conditions: Conditions
) -> np.ndarray:
    """Return the corners (TL, TR, BR, BL) around the origin of a ``layout`` plate posed at random and seen by a
    pinhole camera, scaled so that their bounding box is ``plate_w`` px wide (:func:`_project_plate`).

    Yaw, pitch and roll are uniform within :attr:`Conditions.max_yaw_deg`, :attr:`Conditions.max_pitch_deg` and
    :attr:`Conditions.max_roll_deg` (both signs); the horizontal field of view is uniform in
    :attr:`Conditions.fov_deg`.
    """
    yaw, pitch, roll = (
        rng.uniform(-limit, limit)
        for limit in (conditions.max_yaw_deg, conditions.max_pitch_deg, conditions.max_roll_deg)
    )
    fov = rng.uniform(*conditions.fov_deg)
    return _project_plate(spec.PLATE_SIZE_MM[layout], yaw, pitch, roll, fov, plate_w, frame_w)


def _project_plate(
    size_mm: tuple[float, float],
    yaw_deg: float,
    pitch_deg: float,
    roll_deg: float,
    fov_deg: float,
    plate_w: float,
    frame_w: int,
) -> np.ndarray:
    """Return the 4 corners (TL, TR, BR, BL; 4 x 2, px, centred on the origin) of a plate seen by a pinhole camera.

    The plate (``size_mm`` = width, height) lies in its own x-y plane (x right, y down), is rotated by
    ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` about its centre and put on the optical axis of a camera (x right, y down,
    z forward) with focal length ``f = frame_w / (2 tan(fov / 2))`` px, at the distance ``f * width_mm /
    plate_w`` where it would look ``plate_w`` px wide facing the camera; the corners project to ``f * (X / Z, Y /
    Z)`` (Hartley & Zisserman, "Multiple View Geometry", 2nd ed., section 6.1). So a large plate is near and
    strongly foreshortened (its near edge longer than its far edge), a small one far and nearly affine. The result
    is scaled about its centre so that its bounding box is exactly ``plate_w`` px wide: a similarity of the
    image, so still the exact image of the posed plate, by a camera of another focal length and principal point
    (as is the shift that then places it in the frame).
    """
    mm_w, mm_h = size_mm
    focal = frame_w / (2.0 * math.tan(math.radians(fov_deg) / 2.0))
    yaw, pitch, roll = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    rot_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    rot_z = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    corners = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float64) * [mm_w / 2, mm_h / 2, 0]
    camera = corners @ (rot_z @ rot_x @ rot_y).T + [0.0, 0.0, focal * mm_w / plate_w]
    projected = focal * camera[:, :2] / camera[:, 2:3]
    projected -= (projected.min(axis=0) + projected.max(axis=0)) / 2.0
    return projected * (plate_w / float(np.ptp(projected[:, 0])))


def _plane_holder_quad(rng: np.random.Generator, quad: np.ndarray) -> np.ndarray:
    """Return a plate holder's quad in the plate's own plane: the plate grown about its centre by 4-10 % of its
    width and 8-14 % of its height, mapped through the plate's homography (so it shares its perspective)."""
    grow_x, grow_y = rng.uniform(0.04, 0.1) / 2, rng.uniform(0.08, 0.14) / 2
    unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    grown = unit * [1 + 2 * grow_x, 1 + 2 * grow_y] - [grow_x, grow_y]
    return _apply_homography(_homography(1, 1, quad).astype(np.float64), grown)


def _flat_width(quad: np.ndarray, aspect: float) -> float:
    """Return the width (px) to draw a flat plate of width:height ``aspect`` at so that warping it onto ``quad``
    does not enlarge it along any edge: its longest horizontal edge, or its longest vertical edge times ``aspect``."""
    tl, tr, br, bl = quad
    lengths = [np.linalg.norm(tr - tl), np.linalg.norm(br - bl)]
    lengths += [aspect * np.linalg.norm(bl - tl), aspect * np.linalg.norm(br - tr)]
    return float(max(lengths))


def _holder_quad(rng: np.random.Generator, quad: np.ndarray) -> np.ndarray:
    """Return a plate holder's quad: ``quad`` grown about its centre by 4-14 % (more vertically)."""
    centre = quad.mean(axis=0)
    return centre + (quad - centre) * [1.0 + rng.uniform(0.04, 0.1), 1.0 + rng.uniform(0.08, 0.14)]


def _fit_scale(quad: np.ndarray, width: int, height: int) -> float:
    """Return the factor (<= 1) that makes ``quad``'s bounding box fit inside the image minus its margins."""
    span = quad.max(axis=0) - quad.min(axis=0)
    room = np.array([width, height], np.float64) - 2 * BORDER_MARGIN_PX - 1
    return float(min(1.0, *(room / span)))


def _boxes_overlap(a: np.ndarray, b: np.ndarray, gap: float) -> bool:
    """Return whether the bounding boxes of point sets ``a`` and ``b`` come closer than ``gap`` pixels."""
    a_lo, a_hi = a.min(axis=0) - gap, a.max(axis=0) + gap
    b_lo, b_hi = b.min(axis=0), b.max(axis=0)
    return bool(np.all(a_lo < b_hi) and np.all(b_lo < a_hi))


# -------------------------------------------------------------------------------------------------- compositing


def _homography(canvas_w: int, canvas_h: int, quad: np.ndarray) -> np.ndarray:
    """Return the 3x3 homography mapping the canvas rectangle (edge coordinates) onto ``quad`` (TL, TR, BR, BL)."""
    src = np.array([[0, 0], [canvas_w, 0], [canvas_w, canvas_h], [0, canvas_h]], np.float32)
    return cv2.getPerspectiveTransform(src, quad.astype(np.float32))


def _apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Return ``points`` (N x 2) mapped through the 3x3 homography ``matrix``."""
    homogeneous = np.hstack([points, np.ones((len(points), 1))]) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _paste_warped(image: np.ndarray, canvas: np.ndarray, quad: np.ndarray) -> None:
    """Warp float32 RGB ``canvas`` onto ``quad`` of ``image`` in place, with antialiased edges."""
    canvas_h, canvas_w = canvas.shape[:2]
    height, width = image.shape[:2]
    x0, y0 = (max(int(math.floor(v)) - 1, 0) for v in quad.min(axis=0))
    x1, y1 = (min(int(math.ceil(v)) + 1, limit) for v, limit in zip(quad.max(axis=0), (width, height)))
    # warpPerspective works on pixel centres: canvas pixel i is at edge coordinate i + 0.5, likewise the image.
    to_centres = np.array([[1, 0, -(x0 + 0.5)], [0, 1, -(y0 + 0.5)], [0, 0, 1]], np.float64)
    from_centres = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    matrix = to_centres @ _homography(canvas_w, canvas_h, quad) @ from_centres
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpPerspective(canvas, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpPerspective(
        np.ones((canvas_h, canvas_w), np.float32), matrix, size, flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )[..., None]  # fmt: skip
    region = image[y0:y1, x0:x1]
    region[:] = region * (1.0 - cover) + warped * cover


def _draw_plate(rng: np.random.Generator, image: np.ndarray, plate: _FlatPlate, placement: _Placement) -> np.ndarray:
    """Draw the optional holder and then ``plate`` warped onto its quad; return the (same, modified) image."""
    if placement.holder is not None:
        shade = rng.uniform(10, 90) if rng.random() < 0.7 else rng.uniform(150, 230)
        holder = np.full((8, 8, 3), shade, np.float32) + rng.uniform(-8, 8, size=3).astype(np.float32)
        _paste_warped(image, np.clip(holder, 0, 255), placement.holder)
    _paste_warped(image, plate.image, placement.quad)
    return image


def _occlude(
    rng: np.random.Generator, image: np.ndarray, quad: np.ndarray, char_quads: list[np.ndarray], max_fraction: float
) -> bool:
    """Draw a random object in front of the plate ``quad`` into float32 ``image`` (in place); return whether one was
    drawn.

    The object (:func:`_occluder_mask`: a bar or pole, a tow hook, or a leaf-like blob, in a flat random colour
    with a linear shading) is placed in the plate's own coordinates, so it follows the plate's perspective. It is
    drawn antialiased on a mask :data:`_OCCLUDER_MASK_PLATE_PX`-supersampled for small plates, and kept only if
    it hides at most ``max_fraction`` of the area of every character box of ``char_quads`` (image polygons,
    all plates of the frame) that it touches; otherwise it shrinks, up to :data:`_OCCLUDER_TRIES` times, and
    none is drawn if it never fits.
    """
    height, width = image.shape[:2]
    tl, tr, br, bl = quad
    plate_h = float(np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2.0
    lo = np.floor(quad.min(axis=0) - plate_h).astype(int)
    hi = np.ceil(quad.max(axis=0) + plate_h).astype(int)
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), width), min(int(hi[1]), height)
    supersample = int(np.clip(math.ceil(_OCCLUDER_MASK_PLATE_PX / max(plate_h, 1.0)), 1, 8))
    origin = np.array([x0, y0], np.float64)
    to_image = _homography(1, 1, quad).astype(np.float64)  # the plate's unit square -> image pixels

    def to_mask(points: np.ndarray) -> np.ndarray:
        """Plate-unit points (u across, v down, 0-1 on the plate) -> mask pixel (edge) coordinates."""
        return (_apply_homography(to_image, np.asarray(points, np.float64)) - origin) * supersample

    mask_shape = ((y1 - y0) * supersample, (x1 - x0) * supersample)
    kind = int(rng.integers(3))
    colour = _occluder_colour(rng)
    size = 1.0
    touched = [(q - origin) * supersample for q in char_quads]
    for _ in range(_OCCLUDER_TRIES):
        mask = _occluder_mask(rng, kind, mask_shape, to_mask, plate_h * supersample, size)
        if all(_covered_fraction(mask, q) <= max_fraction for q in touched):
            alpha = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            shading = _random_lighting(rng, y1 - y0, x1 - x0, strength=0.5)[..., None]
            region = image[y0:y1, x0:x1]
            region[:] = region * (1.0 - alpha[..., None]) + (colour * shading) * alpha[..., None]
            return True
        size *= 0.7
    return False


def _occluder_mask(
    rng: np.random.Generator,
    kind: int,
    shape: tuple[int, int],
    to_mask: Callable[[Any], np.ndarray],
    plate_h: float,
    size: float,
) -> np.ndarray:
    """Return a uint8 coverage mask (antialiased, 255 = hidden) of one occluder of ``kind`` at scale ``size``.

    ``to_mask`` maps plate-unit points (u across, v down; the plate is 0-1 both ways) to mask pixels, ``plate_h``
    is the plate's height in mask pixels. Kinds: 0, a straight bar (a pole, a barrier, a branch) crossing the
    plate, near vertical (60 %) or near horizontal, 0.1-0.5 (vertical) or 0.08-0.3 (horizontal) plate heights
    thick; 1, a tow hook: a disk or ring of radius 0.2-0.45 plate heights at the plate's lower edge, on a stem
    going down; 2, a leaf-like ellipse of 0.25-0.7 by 0.15-0.45 plate heights anywhere on the plate.
    """
    mask = np.zeros(shape, np.uint8)
    shift = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions
    fixed = _fixed_point
    if kind == 0:
        if rng.random() < 0.6:
            u0 = rng.uniform(0.05, 0.95)
            ends = [[u0 + rng.uniform(-0.15, 0.15), -0.8], [u0 + rng.uniform(-0.15, 0.15), 1.8]]
            thickness = rng.uniform(0.1, 0.5) * plate_h * size
        else:
            v0 = rng.uniform(0.1, 0.9)
            ends = [[-0.3, v0 + rng.uniform(-0.1, 0.1)], [1.3, v0 + rng.uniform(-0.1, 0.1)]]
            thickness = rng.uniform(0.08, 0.3) * plate_h * size
        p0, p1 = to_mask(ends)
        cv2.line(mask, fixed(p0), fixed(p1), 255, max(1, int(round(thickness))), cv2.LINE_AA, shift)
    elif kind == 1:
        u0, v0 = rng.uniform(0.3, 0.7), rng.uniform(0.95, 1.25)
        centre, foot = to_mask([[u0, v0], [u0, v0 + 1.0]])
        radius = rng.uniform(0.2, 0.45) * plate_h * size
        ring = rng.random() < 0.5
        cv2.line(mask, fixed(centre), fixed(foot), 255, max(1, int(round(0.6 * radius))), cv2.LINE_AA, shift)
        thickness = max(1, int(round(0.35 * radius))) if ring else -1
        cv2.circle(mask, fixed(centre), int(round(radius * 16)), 255, thickness, cv2.LINE_AA, shift)
    else:
        (centre,) = to_mask([[rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)]])
        axes = (rng.uniform(0.25, 0.7) * plate_h * size / 2, rng.uniform(0.15, 0.45) * plate_h * size / 2)
        axes16 = (max(16, int(round(axes[0] * 16))), max(16, int(round(axes[1] * 16))))
        cv2.ellipse(mask, fixed(centre), axes16, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, shift)
    return mask


def _fixed_point(point: np.ndarray) -> tuple[int, int]:
    """Return ``(x, y)`` in OpenCV's fixed point with 4 fractional bits (drawing with ``shift=4``)."""
    return int(round(float(point[0]) * 16)), int(round(float(point[1]) * 16))


def _covered_fraction(mask: np.ndarray, quad: np.ndarray) -> float:
    """Return the fraction of polygon ``quad``'s area (mask pixels) that uint8 coverage ``mask`` hides (0-1); 0 for
    a polygon outside the mask. Only the part inside the mask counts as the polygon's area, so a polygon cut by
    the mask's edge gets a fraction no lower than its true one."""
    lo = np.maximum(np.floor(quad.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(quad.max(axis=0)).astype(int), [mask.shape[1], mask.shape[0]])
    if np.any(hi <= lo):
        return 0.0
    window = mask[lo[1] : hi[1], lo[0] : hi[0]]
    inside = np.zeros(window.shape, np.uint8)
    points = np.round((quad - lo) * 16).astype(np.int32)
    cv2.fillPoly(inside, [points], 1, cv2.LINE_8, 4)
    area = int(inside.sum())
    if area == 0:
        return 0.0
    return float(window[inside > 0].sum(dtype=np.int64)) / (255.0 * area)


def _occluder_colour(rng: np.random.Generator) -> np.ndarray:
    """Return an occluder's float32 RGB colour: dark (tyre, black metal), grey metal, foliage green or random."""
    kind = int(rng.integers(4))
    if kind == 0:
        colour = np.full(3, rng.uniform(10, 60))
    elif kind == 1:
        colour = np.full(3, rng.uniform(90, 200)) + rng.uniform(-10, 10, size=3)
    elif kind == 2:
        colour = np.array([rng.uniform(30, 90), rng.uniform(80, 160), rng.uniform(20, 70)])
    else:
        colour = rng.uniform(0, 255, size=3)
    return np.clip(colour, 0, 255).astype(np.float32)


def _degrade(rng: np.random.Generator, image: np.ndarray, conditions: Conditions = CLASSIC) -> np.ndarray:
    """Apply lighting, brightness/contrast/gamma, blur and noise to float32 ``image``; return RGB uint8.

    The classic photometry (:attr:`Conditions.photometry` ``"classic"``), in float32 over the whole frame: with
    :attr:`Conditions.lighting_probability` a gradient and/or shadow (:func:`_random_lighting`), then contrast about
    the mean, brightness and gamma, then :func:`_random_blur`, then Gaussian noise per channel.
    """
    height, width = image.shape[:2]
    if rng.random() < conditions.lighting_probability:
        image = image * _random_lighting(rng, height, width, strength=0.4)[..., None]
    mean = float(image.mean())
    image = (image - mean) * rng.uniform(*conditions.contrast) + mean + rng.uniform(*conditions.brightness)
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** rng.uniform(*conditions.gamma)
    image = _random_blur(rng, image.astype(np.float32), conditions)
    sigma = rng.uniform(*conditions.noise_sigma)
    image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _random_blur(rng: np.random.Generator, image: np.ndarray, conditions: Conditions = CLASSIC) -> np.ndarray:
    """Return ``image`` (float32 or uint8) unchanged or blurred, as :class:`Conditions` says: Gaussian (sigma from
    :attr:`~Conditions.gaussian_sigma_px`), motion (a line of :attr:`~Conditions.motion_blur_px` at any angle)
    or defocus (an antialiased disk of radius :attr:`~Conditions.defocus_radius_px`), with their probabilities."""
    kind = rng.random()
    gaussian, motion = conditions.gaussian_blur_probability, conditions.motion_blur_probability
    if kind < gaussian:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(*conditions.gaussian_sigma_px))
    if kind < gaussian + motion:
        length = int(rng.integers(conditions.motion_blur_px[0], conditions.motion_blur_px[1] + 1))
        angle = rng.uniform(0, math.pi)
        kernel = np.zeros((length, length), np.float32)
        c = (length - 1) / 2.0
        dx, dy = c * math.cos(angle), c * math.sin(angle)
        cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
        return cv2.filter2D(image, -1, kernel / kernel.sum())
    if kind < gaussian + motion + conditions.defocus_blur_probability:
        radius = rng.uniform(*conditions.defocus_radius_px)
        half = int(math.ceil(radius + 0.5)) - 1
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
        kernel = np.clip(radius + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
        return cv2.filter2D(image, -1, kernel / kernel.sum())
    return image


@dataclass(frozen=True)
class _Exposure:
    """A frame's exposure: ``kind`` ``"normal"``, ``"night"`` or ``"over"`` (over-exposed); ``gain`` the scene's
    exposure gain of a night frame (1 otherwise)."""

    kind: str
    gain: float = 1.0


def _random_exposure(rng: np.random.Generator, conditions: Conditions) -> _Exposure:
    """Return a frame's exposure, night or over-exposed with the probabilities of
    :attr:`Conditions.night_probability` and :attr:`Conditions.overexposure_probability` (a night's gain from
    :attr:`Conditions.night_gain`), else normal."""
    u = rng.random()
    if u < conditions.night_probability:
        return _Exposure("night", rng.uniform(*conditions.night_gain))
    if u < conditions.night_probability + conditions.overexposure_probability:
        return _Exposure("over")
    return _Exposure("normal")


def _degrade_camera(
    rng: np.random.Generator, image: np.ndarray, conditions: Conditions, exposure: _Exposure
) -> np.ndarray:
    """Apply a camera's lighting, exposure, blur and noise to float32 ``image`` (H x W x 3); return RGB uint8.

    The ``"camera"`` photometry, fast on large frames: the smooth light fields (a night frame's light pool,
    :func:`_light_falloff`; with :attr:`Conditions.lighting_probability` a gradient and/or shadow,
    :func:`_random_lighting`) are computed on a grid :data:`_LIGHT_FIELD_STEP` times coarser and resized up; the
    exposure is one 256-entry tone curve applied to the 8-bit frame (:func:`_tone_curve`); then
    :func:`_random_blur` on the 8-bit frame, and Gaussian grey noise (:attr:`Conditions.night_noise_sigma` at
    night, else :attr:`Conditions.noise_sigma`). Nothing runs in float64 over the frame.
    """
    height, width = image.shape[:2]
    small_h, small_w = max(2, -(-height // _LIGHT_FIELD_STEP)), max(2, -(-width // _LIGHT_FIELD_STEP))
    light = None
    if exposure.kind == "night":  # the exposure gain goes with the light field, before 8-bit rounding
        light = _light_falloff(rng, small_h, small_w, rng.uniform(*conditions.night_falloff))
        light *= np.float32(exposure.gain)
    if rng.random() < conditions.lighting_probability:
        shading = _random_lighting(rng, small_h, small_w, strength=0.4)
        light = shading if light is None else light * shading
    # OpenCV's arithmetic with an 8-bit result rounds and saturates in one pass (numpy would take several).
    if light is not None:
        light = cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)
        frame = cv2.multiply(image, cv2.merge([light, light, light]), dtype=cv2.CV_8U)
    else:
        frame = cv2.convertScaleAbs(image)  # the frame is >= 0, so this only rounds and saturates
    frame = cv2.LUT(frame, _tone_curve(rng, frame, conditions, exposure))
    frame = _random_blur(rng, frame, conditions)
    sigma = rng.uniform(*(conditions.night_noise_sigma if exposure.kind == "night" else conditions.noise_sigma))
    if sigma <= 0:
        return frame
    noise = rng.standard_normal((height, width), dtype=np.float32)
    noise *= np.float32(sigma)
    return cv2.add(frame, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)


def _tone_curve(rng: np.random.Generator, frame: np.ndarray, conditions: Conditions, exposure: _Exposure) -> np.ndarray:
    """Return the 256-entry uint8 tone curve of a frame's exposure (input grey level -> output, clipped to 0-255).

    - ``"normal"``: contrast about the frame's mean (:attr:`Conditions.contrast`), brightness
      (:attr:`Conditions.brightness`) and gamma (:attr:`Conditions.gamma`), as :func:`_degrade` does;
    - ``"night"``: none (the identity; the night's gain is applied with its light field, before rounding to 8 bits,
      so that a lit plate brighter than 255 comes out right);
    - ``"over"``: a haze ``v (1 - h) + 255 h`` (:attr:`Conditions.overexposure_haze`) amplified by
      :attr:`Conditions.overexposure_gain`, capped so that grey level :data:`OVEREXPOSURE_LEGIBILITY` ``[0]`` maps
      no higher than ``[1]``: the plate washes out and clips, its ink stays visible.
    """
    levels = np.arange(256, dtype=np.float64)
    if exposure.kind == "night":
        curve = levels
    elif exposure.kind == "over":
        haze = rng.uniform(*conditions.overexposure_haze)
        dark, ceiling = OVEREXPOSURE_LEGIBILITY
        cap = max(1.0, ceiling / (dark * (1.0 - haze) + 255.0 * haze))
        curve = (levels * (1.0 - haze) + 255.0 * haze) * min(rng.uniform(*conditions.overexposure_gain), cap)
    else:
        mean = float(frame[::4, ::4].mean())
        curve = (levels - mean) * rng.uniform(*conditions.contrast) + mean + rng.uniform(*conditions.brightness)
        curve = 255.0 * (np.clip(curve, 0, 255) / 255.0) ** rng.uniform(*conditions.gamma)
    return np.clip(np.rint(curve), 0, 255).astype(np.uint8)


def _light_falloff(rng: np.random.Generator, height: int, width: int, floor: float) -> np.ndarray:
    """Return a float32 ``(height, width)`` night light field: 1 at a random spot (a street lamp's or headlights'
    pool of light), falling off as a Gaussian of radius 0.3-0.7 frame diagonals to ``floor`` far from it."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    radius = rng.uniform(0.3, 0.7) * math.hypot(width, height)
    pool = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / np.float32(radius**2))
    return (floor + (1.0 - floor) * pool).astype(np.float32)


# -------------------------------------------------------------------------------------------------- annotations


def _plate_shapes(plate: _FlatPlate, quad: np.ndarray, group_id: int, width: int, height: int) -> list[dict[str, Any]]:
    """Return the labelme shapes of one plate: its outline polygon, then one polygon per character."""
    shapes = [_polygon(_plate_label(plate.layout), quad, group_id, width, height)]
    for char, corners in zip(plate.text, _char_quads(plate, quad)):
        shapes.append(_polygon(char, corners, group_id, width, height))
    return shapes


def _char_quads(plate: _FlatPlate, quad: np.ndarray) -> list[np.ndarray]:
    """Return each character's ink box of ``plate`` (TL, TR, BR, BL) mapped into the image, where the plate's
    canvas is warped onto ``quad``: 4 x 2 float64 arrays in image pixels, in reading order."""
    canvas_h, canvas_w = plate.image.shape[:2]
    matrix = _homography(canvas_w, canvas_h, quad).astype(np.float64)
    quads = []
    for x0, y0, x1, y1 in plate.boxes:
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        quads.append(_apply_homography(matrix, corners))
    return quads


def _polygon(label: str, points: np.ndarray, group_id: int, width: int, height: int) -> dict[str, Any]:
    """Return a labelme polygon shape; points are clamped to the image and rounded to 2 decimals."""
    clamped = np.clip(points, 0.0, [width, height])
    return {
        "label": label,
        "points": [[round(float(x), 2), round(float(y), 2)] for x, y in clamped],
        "group_id": group_id,
        "shape_type": "polygon",
        "flags": {},
        "description": "",
    }


def _labelme_dict(shapes: list[dict[str, Any]], image_path: str, width: int, height: int) -> dict[str, Any]:
    """Return a labelme 5.x annotation dict (no embedded image data)."""
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
