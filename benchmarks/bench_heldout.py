"""Generalisation check: read plates the training data never showed (a script to run, not a test).

Draws a held-out set with :mod:`alpr.data.synth` from *other* sources than the training data: type faces from PyPI font
packages the project does not train on (``font-lato``, ``font-hanken-grotesk``: ``pip install -e .[bench]``),
background photographs of scikit-image that are not in :data:`alpr.data.synth.SKIMAGE_PHOTOS`, and seeds the
bootstrap never uses; each face drawn as designed (the training data's glyph slant and elastic distortion are off
unless ``--distort-glyphs``). ``--conditions`` (:data:`CONDITIONS`) sets what the frames look like:

- ``road`` (the default): the synthesizer's roadside-camera conditions (:data:`alpr.data.synth.ROAD`: plates 3-45 %
  of the frame width, mostly small; yaw, pitch and roll; night and over-exposed frames; motion and defocus blur;
  occlusion; JPEG quality 30-95), half the frames 1920x1080 and half 1280x720 (:data:`ROAD_FRAMES`);
- ``classic``: the synthesizer's original conditions (:data:`alpr.data.synth.CLASSIC`) on 1280x720 frames with
  seed :data:`HELDOUT_SEED`, the held-out set this script drew before (``docs/bench_heldout.json`` of the earlier
  designs).

Then reads every image with the model (``--model``: a model directory, ``gs://`` URI or ``latest``) exactly as
``python -m alpr.serving.predict`` does (``--backend``: ONNX Runtime or PyTorch, as there), and prints EIR, recall,
plate precision and character accuracy (PLATE_SPEC "Metrics"), the same per plate-width bucket (< 5 %, 5-10 %,
10-20 %, >= 20 % of the frame width), angle bucket, layout and brightness (:mod:`alpr.model.breakdown`), and the
most frequent misreadings. ``--json`` writes the figures.

Usage::

    ALPR_WORKSPACE=.alpr-bench .venv/bin/python benchmarks/bench_heldout.py --model latest --n 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

#: PyPI font packages used only here (never for training data).
HELDOUT_FONT_PACKAGES = ("font_lato", "font_hanken_grotesk")
#: scikit-image data files that are photographs but not training backgrounds.
HELDOUT_PHOTOS = (
    "chessboard_RGB.png",
    "color.png",
    "lily.tif",
    "microaneurysms.png",
    "retina.jpg",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "astronaut.png",
)
#: Seed of the ``classic`` held-out set (the set this script drew before ``--conditions``).
HELDOUT_SEED = 9001
#: Frames of the ``road`` held-out set: (long side of a 16:9 frame, seed) per frame size, the frames shared out evenly
#: (the larger size takes the odd one). Seeds of their own: not the bootstrap's (0), the classic set's, or
#: ``bench_plate_detector.py``'s (9002, 9003).
ROAD_FRAMES: tuple[tuple[int, int], ...] = ((1920, 9014), (1280, 9015))
CLASSIC_FRAMES: tuple[tuple[int, int], ...] = ((1280, HELDOUT_SEED),)
#: ``--conditions`` choices: the :mod:`alpr.data.synth` preset (by name) and the frames.
CONDITIONS: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {
    "road": ("ROAD", ROAD_FRAMES),
    "classic": ("CLASSIC", CLASSIC_FRAMES),
}
#: Frames are 16:9, as a roadside camera's 1920x1080 and 1280x720.
ASPECT = (16, 9)


def heldout_fonts() -> tuple[str, ...]:
    """Upright TTF and OpenType faces of :data:`HELDOUT_FONT_PACKAGES` that draw every plate character distinctly.

    Raises:
        SystemExit: none of the packages is installed.
    """
    from alpr.data import synth

    files = []
    for package in HELDOUT_FONT_PACKAGES:
        found = importlib.util.find_spec(package)
        if found is not None and found.submodule_search_locations:
            for location in found.submodule_search_locations:
                files += sorted([*Path(location).rglob("*.ttf"), *Path(location).rglob("*.otf")])
    fonts = tuple(
        str(f)
        for f in files
        if not any(m in f.name for m in synth.EXCLUDED_FONT_MARKERS) and synth._font_is_usable(str(f))
    )
    if not fonts:
        raise SystemExit(
            f"no held-out fonts: pip install {' '.join(p.replace('_', '-') for p in HELDOUT_FONT_PACKAGES)}"
        )
    return fonts


def heldout_photos() -> tuple[Path, ...]:
    """scikit-image photographs that are not training backgrounds (those in :data:`HELDOUT_PHOTOS` that exist
    and are not in :data:`alpr.data.synth.SKIMAGE_PHOTOS`)."""
    import skimage

    from alpr.data import synth

    data = Path(skimage.__file__).parent / "data"
    photos = tuple(data / n for n in HELDOUT_PHOTOS if (data / n).is_file() and n not in synth.SKIMAGE_PHOTOS)
    if not photos:
        raise SystemExit(f"no held-out photographs in {data}")
    return photos


def frame_plan(n: int, conditions: str) -> list[tuple[int, int, int]]:
    """How the ``n`` held-out frames are drawn: ``[(long side, count, seed), ...]`` for the ``conditions`` (a key of
    :data:`CONDITIONS`), the counts as even as can be, the first frame sizes taking the odd ones; sizes that get no
    frame are left out.

    Raises:
        ValueError: ``n`` is negative or ``conditions`` is unknown.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if conditions not in CONDITIONS:
        raise ValueError(f"unknown conditions {conditions!r}; expected one of {', '.join(CONDITIONS)}")
    frames = CONDITIONS[conditions][1]
    k = len(frames)
    plan = [(side, n // k + (i < n % k), seed) for i, (side, seed) in enumerate(frames)]
    return [row for row in plan if row[1] > 0]


def frame_name(long_side: int) -> str:
    """``"1920x1080"`` for a 16:9 frame of that long side."""
    return f"{long_side}x{long_side * ASPECT[1] // ASPECT[0]}"


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.3f}"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from alpr.serving.predict import add_backend_argument

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="latest", help="model directory, gs:// URI or 'latest' (metadata store)")
    p.add_argument("--n", type=int, default=200, help="held-out images (default 200)")
    p.add_argument(
        "--conditions",
        choices=sorted(CONDITIONS),
        default="road",
        help="road: roadside-camera frames, 1920x1080 and 1280x720 (default); classic: the earlier held-out set",
    )
    p.add_argument("--out", type=Path, default=None, help="keep the held-out images here (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    add_backend_argument(p)
    p.add_argument(
        "--distort-glyphs",
        action="store_true",
        help="slant and distort the glyphs as the training data does (default: each face as designed)",
    )
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be at least 1, got {args.n}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)

    import cv2

    from alpr.data import synth
    from alpr.data.coco import ground_truth_plates
    from alpr.data.labelme import load_labelme
    from alpr.model.breakdown import BreakdownMetrics, format_breakdown
    from alpr.serving.predict import predict

    conditions = getattr(synth, CONDITIONS[args.conditions][0])
    plan = frame_plan(args.n, args.conditions)
    fonts, photos = heldout_fonts(), heldout_photos()
    print(f"held-out fonts: {', '.join(Path(f).stem for f in fonts)}")
    print(f"held-out photographs: {', '.join(p.name for p in photos)} (+ collages and drawn scenes)")
    frames = " + ".join(f"{count} x {frame_name(side)}" for side, count, _ in plan)
    acc, confusions = BreakdownMetrics(), Counter()
    with tempfile.TemporaryDirectory(prefix="alpr-heldout-") as tmp:
        out = args.out or Path(tmp)
        for long_side, count, seed in plan:
            sources = synth.Sources(
                fonts=fonts,
                photos=photos,
                long_side=(long_side, long_side),
                aspects=(ASPECT,),
                distort_glyphs=args.distort_glyphs,
            )
            jsons = synth.synthesize(
                out / frame_name(long_side), count, seed=seed, sources=sources, conditions=conditions
            )
            images = [j.with_suffix(".jpg") for j in jsons]
            readings = predict(args.model, images, backend=args.backend)  # per frame size: distinct file names
            for j, img in zip(jsons, images, strict=True):
                lf = load_labelme(j)
                truth = ground_truth_plates(lf)
                reading = readings[img.name]
                acc.add(truth, reading, (lf.width, lf.height), cv2.imread(str(img), cv2.IMREAD_GRAYSCALE))
                got = sorted(pl["text"] for pl in reading["plates"])
                for t in sorted(pl["text"] for pl in truth):
                    if t not in got:
                        confusions[f"{t} → {' / '.join(got) or '(nothing)'}"] += 1
    breakdown = acc.result()
    res = breakdown.overall
    print(
        f"held-out ({args.n} images, {args.conditions} conditions, {frames}, {args.backend} back end): EIR "
        f"{_fmt(res['eir'])}  recall "
        f"{_fmt(res['recall'])}  plate precision {_fmt(res['plate_precision'])}  char accuracy "
        f"{_fmt(res['char_accuracy'])}"
    )
    print(format_breakdown(breakdown))
    for text, count in confusions.most_common(10):
        print(f"  {count} x {text}")
    if args.json:
        figures: dict[str, Any] = breakdown.to_json()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "conditions": args.conditions,
                    "backend": args.backend,
                    "frames": [{"size": frame_name(side), "images": count, "seed": seed} for side, count, seed in plan],
                    "distort_glyphs": args.distort_glyphs,
                    "fonts": [Path(f).name for f in fonts],
                    "photos": [p.name for p in photos],
                    "metrics": figures["overall"],
                    "breakdown": {"groups": figures["groups"], "unassigned": figures["unassigned"]},
                    "misreadings": confusions.most_common(20),
                },
                indent=2,
                ensure_ascii=False,
                allow_nan=False,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
