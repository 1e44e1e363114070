"""TextDis-layout data roots and their ground-truth text boxes.

A root holds ``text/<name>.<ext>``, ``text_gt/<name>_gt.txt`` and ``nontext/<name>.<ext>``.
A GT line is 8 numbers ``x1 y1 x2 y2 x3 y3 x4 y4`` (spaces or commas), optionally followed by a
transcription; ``###`` marks an illegible box (still text). A malformed line raises
:class:`AnnotationError` naming the file and the line: labels are never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from textsieve.errors import AnnotationError, TextsieveError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
_SPLIT = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Polygon:
    """A text box: four (x, y) corners in pixel coordinates of the stored image."""

    points: tuple[tuple[float, float], ...]
    illegible: bool = False
    text: str = ""


@dataclass(frozen=True)
class Sample:
    """One image of a data root.

    Attributes:
        path: the image file.
        is_text: True for images under ``text/``.
        gt_path: its GT file, or None (text images without GT have an image label only).
    """

    path: Path
    is_text: bool
    gt_path: Path | None

    @property
    def source(self) -> str:
        """Data-set prefix of the file name (before the first ``_``), for per-source metrics."""
        name = self.path.name
        return name.split("_", 1)[0] if "_" in name else "unknown"


def parse_gt_line(line: str, where: str) -> Polygon | None:
    """Parse one GT line; None for a blank line.

    Args:
        line: the text of the line, BOM and line end allowed.
        where: ``file:line`` for error messages.
    """
    s = line.lstrip("\ufeff").strip()
    if not s:
        return None
    tokens = [t for t in _SPLIT.split(s, maxsplit=8) if t != ""]
    if len(tokens) < 8:
        raise AnnotationError(f"{where}: expected 8 coordinates, got {len(tokens)}: {s[:80]!r}")
    try:
        coords = [float(t) for t in tokens[:8]]
    except ValueError:
        raise AnnotationError(f"{where}: coordinates must be numbers: {s[:80]!r}") from None
    if any(c != c or c in (float("inf"), float("-inf")) for c in coords):
        raise AnnotationError(f"{where}: non-finite coordinate: {s[:80]!r}")
    text = tokens[8].strip() if len(tokens) > 8 else ""
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1]
    pts = tuple((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return Polygon(points=pts, illegible=text == "###", text=text)


def read_gt(path: Path) -> list[Polygon]:
    """Read every box of a GT file (UTF-8, BOM tolerated; Latin-1 fallback for old ICDAR files)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    polys = []
    for i, line in enumerate(text.splitlines(), start=1):
        poly = parse_gt_line(line, f"{path}:{i}")
        if poly is not None:
            polys.append(poly)
    return polys


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def scan_root(root: Path) -> list[Sample]:
    """List a TextDis-layout root: text images first, then non-text, each sorted by name.

    Raises:
        TextsieveError: when the root has neither ``text/`` nor ``nontext/``.
    """
    root = Path(root)
    if not (root / "text").is_dir() and not (root / "nontext").is_dir():
        raise TextsieveError(f"{root}: not a TextDis-layout root (no text/ or nontext/ folder)")
    samples = []
    for p in _images(root / "text"):
        gt = root / "text_gt" / f"{p.stem}_gt.txt"
        samples.append(Sample(p, True, gt if gt.is_file() else None))
    samples.extend(Sample(p, False, None) for p in _images(root / "nontext"))
    return samples


def format_gt_line(points: list[tuple[float, float]] | tuple[tuple[float, float], ...]) -> str:
    """One GT line of 8 integers, the inverse of :func:`parse_gt_line` (used by autolabel)."""
    return " ".join(str(int(round(v))) for pt in points for v in pt)
