"""The documentation agrees with the code: docs/PLATE_SPEC.md states alpr.spec's contract, every PLATE_SPEC section a
docstring cites exists, and every relative link in the Markdown files resolves inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alpr import spec

ROOT = Path(__file__).resolve().parents[2]
PLATE_SPEC = ROOT / "docs" / "PLATE_SPEC.md"
MARKDOWN = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "katib").glob("*.md")])
#: A citation of a section: PLATE_SPEC "Metrics", PLATE_SPEC.md "A reading", PLATE_SPEC.md`` "Annotations".
CITATION = re.compile(r'PLATE_SPEC(?:\.md)?`{0,2},? "([^"]+)"')


def _headings(text: str) -> list[str]:
    return [h.strip() for h in re.findall(r"^#{1,6} (.+)$", text, re.M)]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_plate_spec_states_the_contract_of_alpr_spec():
    text = PLATE_SPEC.read_text(encoding="utf-8")
    assert f"`{spec.PLATE_PATTERN.pattern}`" in text or spec.PLATE_PATTERN.pattern in text
    labels = re.findall(r"^\| (\d+(?:–\d+)?) +\| (`[^|]+`) +\|", text, re.M)
    listed = [t.strip("` ") for _, cell in labels for t in re.split(r"`\s*…\s*`", cell)]
    assert listed == ["0", "9", "A", "E", "plate_one_line", "plate_two_line"]
    assert spec.CLASSES[0] == "0" and spec.CLASSES[9] == "9" and spec.CLASSES[14] == "E"
    assert spec.CLASSES[15:] == ("plate_one_line", "plate_two_line")
    for layout, (w, h) in spec.PLATE_SIZE_MM.items():
        assert re.search(rf"`{layout}`.*{w} × {h} mm", text), layout
    for old, new in spec.LEGACY_LABELS.items():
        if old.startswith(("l_", "r_")):
            assert re.search(rf"`{old}` +\| `{new}`", text), old
    for dropped in spec.DROPPED_LABELS:
        assert f"`{dropped}`" in text


def test_every_cited_plate_spec_section_exists():
    text = PLATE_SPEC.read_text(encoding="utf-8")
    headings = {h.lower() for h in _headings(text)}
    prose = " ".join(text.replace("*", "").split())  # a cited rule may be a sentence of the text, not a heading
    cited = set()
    for path in [*ROOT.glob("alpr/**/*.py"), *ROOT.glob("components/*.py"), *ROOT.glob("dataset_tools/*.py")]:
        cited |= {(path.relative_to(ROOT), c) for c in CITATION.findall(path.read_text(encoding="utf-8"))}
    assert cited, "no citations found: the pattern is stale"
    missing = sorted(
        str(p) + ": " + c for p, c in cited if not any(h.startswith(c.lower()) for h in headings) and c not in prose
    )
    assert not missing, missing


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    text = doc.read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in _headings(text)}
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve()
        if path and not resolved.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif (path and not resolved.exists()) or (not path and anchor not in anchors):
            broken.append(target)
    assert not broken, broken


def test_license_file_matches_the_declared_licence():
    """pyproject.toml declares Apache-2.0: the repository carries that licence's text (and so the wheel does)."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
