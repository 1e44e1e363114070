"""``textsieve labels``: region labels for every image of a TextDis-layout root, as JSONL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textsieve.annotations import Sample, read_gt, scan_root
from textsieve.config import LabelConfig
from textsieve.decode import image_size
from textsieve.errors import AnnotationError, DecodeError, TextsieveError
from textsieve.regions import REGION_SLICES, exif_transform_points, labels_from_polygons


@dataclass
class LabelStats:
    """Summary of a labelling run."""

    images: int = 0
    text_images: int = 0
    with_gt: int = 0
    positive_regions: dict[int, int] = field(default_factory=lambda: {3: 0, 5: 0})
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImageLabels:
    """Labels of one image. ``regions`` is None for a text image without GT."""

    path: str
    width: int
    height: int
    is_text: bool
    regions: list[int] | None
    boxes: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


def label_sample(sample: Sample, cfg: LabelConfig) -> ImageLabels:
    """Region labels of one sample; raises AnnotationError / DecodeError on bad input."""
    width, height, orientation = image_size(sample.path)
    if not sample.is_text:
        return ImageLabels(str(sample.path), *_upright(width, height, orientation), False, [0] * 34)
    if sample.gt_path is None:
        return ImageLabels(str(sample.path), *_upright(width, height, orientation), True, None)
    polys = read_gt(sample.gt_path)
    if orientation not in (1, 0):
        # GT boxes are in stored pixels; networks see the EXIF-upright image.
        polys = [
            type(p)(
                exif_transform_points(p.points, orientation, width, height), p.illegible, p.text
            )
            for p in polys
        ]
        width, height = _upright(width, height, orientation)
    regions = labels_from_polygons(polys, width, height, cfg)
    return ImageLabels(str(sample.path), width, height, True, regions.tolist(), len(polys))


def _upright(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def write_labels(
    root: Path,
    out: Path,
    cfg: LabelConfig | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> LabelStats:
    """Label every image of ``root`` and write one JSON object per line to ``out`` (atomically).

    A malformed GT file stops the run with an error naming file and line (labels are never
    silently dropped). Text images whose boxes give no positive region are listed as problems.
    """
    cfg = cfg or LabelConfig()
    samples = scan_root(root)
    stats = LabelStats()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for s in samples:
            try:
                lab = label_sample(s, cfg)
            except DecodeError as e:
                raise TextsieveError(f"{s.path}: unreadable image: {e}") from None
            except AnnotationError:
                tmp.unlink(missing_ok=True)
                raise
            fh.write(lab.to_json() + "\n")
            stats.images += 1
            stats.text_images += int(lab.is_text)
            if lab.is_text and lab.regions is not None:
                stats.with_gt += 1
                arr = np.asarray(lab.regions)
                for g, sl in REGION_SLICES.items():
                    stats.positive_regions[g] += int(arr[sl].sum())
                if not arr.any():
                    stats.problems.append(
                        f"{s.path.name}: text image but no region reaches the rule"
                    )
            if on_progress:
                on_progress(1)
    os.replace(tmp, out)
    return stats


def read_labels(path: Path) -> list[ImageLabels]:
    """Read a labels JSONL file written by :func:`write_labels`."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append(ImageLabels(**d))
            except (json.JSONDecodeError, TypeError) as e:
                raise TextsieveError(f"{path}:{i}: bad labels line: {e}") from None
    return out
