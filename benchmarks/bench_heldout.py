"""Generalisation check: read plates the training data never showed (a script to run, not a test).

Draws a held-out set with :mod:`alpr.data.synth` from *other* sources than the training data: type faces from PyPI font
packages the project does not train on (``font-lato``, ``font-hanken-grotesk``: ``pip install -e .[bench]``),
background photographs of scikit-image that are not in :data:`alpr.data.synth.SKIMAGE_PHOTOS`, 1280x720 frames, a
seed the bootstrap never uses; with the synthesizer's own perspective, blur, noise and JPEG artefacts, and each face
drawn as designed (the training data's glyph slant and elastic distortion are off unless ``--distort-glyphs``). Then reads
every image with the model (``--model``: a model directory, ``gs://`` URI or ``latest``) exactly as
``python -m alpr.serving.predict`` does, and prints EIR, plate precision and character accuracy (PLATE_SPEC "Metrics")
and the most frequent misreadings. ``--json`` writes the figures.

Usage::

    ALPR_WORKSPACE=.alpr-bench .venv/bin/python benchmarks/bench_heldout.py --model latest --n 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

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
HELDOUT_SEED = 9001


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="latest", help="model directory, gs:// URI or 'latest' (metadata store)")
    p.add_argument("--n", type=int, default=200, help="held-out images (default 200)")
    p.add_argument("--out", type=Path, default=None, help="keep the held-out images here (default: a temp folder)")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument(
        "--distort-glyphs",
        action="store_true",
        help="slant and distort the glyphs as the training data does (default: each face as designed)",
    )
    args = p.parse_args(argv)

    from alpr.data import synth
    from alpr.data.coco import ground_truth_plates
    from alpr.data.labelme import load_labelme
    from alpr.model.metrics import PlateMetrics
    from alpr.serving.predict import predict

    fonts, photos = heldout_fonts(), heldout_photos()
    print(f"held-out fonts: {', '.join(Path(f).stem for f in fonts)}")
    print(f"held-out photographs: {', '.join(p.name for p in photos)} (+ collages and drawn scenes)")
    sources = synth.Sources(
        fonts=fonts, photos=photos, long_side=(1280, 1280), aspects=((16, 9),), distort_glyphs=args.distort_glyphs
    )
    with tempfile.TemporaryDirectory(prefix="alpr-heldout-") as tmp:
        out = args.out or Path(tmp)
        jsons = synth.synthesize(out, args.n, seed=HELDOUT_SEED, sources=sources)
        images = [j.with_suffix(".jpg") for j in jsons]
        readings = predict(args.model, images)
        acc, confusions = PlateMetrics(), Counter()
        for j, img in zip(jsons, images):
            truth = ground_truth_plates(load_labelme(j))
            reading = readings[img.name]
            acc.add(truth, reading)
            got = sorted(pl["text"] for pl in reading["plates"])
            for t in sorted(pl["text"] for pl in truth):
                if t not in got:
                    confusions[f"{t} → {' / '.join(got) or '(nothing)'}"] += 1
    res = {k: float(v) for k, v in acc.result().items() if isinstance(v, (int, float))}
    print(
        f"held-out ({args.n} images, 1280x720): EIR {res['eir']:.3f}  plate precision {res['plate_precision']:.3f}"
        f"  char accuracy {res['char_accuracy']:.3f}"
    )
    for text, count in confusions.most_common(10):
        print(f"  {count} x {text}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "n": args.n,
                    "distort_glyphs": args.distort_glyphs,
                    "fonts": [Path(f).name for f in fonts],
                    "photos": [p.name for p in photos],
                    "metrics": res,
                    "misreadings": confusions.most_common(20),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
