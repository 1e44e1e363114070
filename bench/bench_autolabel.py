"""Detector settings for ``textsieve autolabel``: speed, boxes and decisions per data folder.

Runs the PP-OCRv4 detector + recogniser under several resize settings over a seeded random sample
of each folder and prints, per setting and folder: median ms/image of the detector and of
detector + recogniser (1 thread; the settings take turns on every image, so machine load hits
all alike), share of images with any box, mean boxes per image, and the autolabel decision
counts under the default rule.
``--dump`` keeps every raw result (boxes, scores, strings) as JSON to study other rules.

    python bench/bench_autolabel.py /work/shared/data/pool /work/shared/data/train/nontext \
        /work/shared/data/train/text --n 60 --dump /tmp/bench_autolabel.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from textsieve.annotations import IMAGE_EXTENSIONS
from textsieve.autolabel import AutolabelConfig, decide
from textsieve.decode import decode_image
from textsieve.ocr import OcrConfig, load_ocr

SETTINGS = {
    "wheel default (short side -> 736)": OcrConfig(limit_side=736, limit_type="min"),
    "long side <= 960": OcrConfig(limit_side=960, limit_type="max"),
    "long side -> 960, enlarging (default)": OcrConfig(limit_side=960, limit_type="long"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=60, help="images per folder (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dump", type=Path, default=None, help="write raw results as JSON")
    ap.add_argument("--settings", nargs="*", type=int, default=None,
                    help="indices into SETTINGS to run (default: all)")
    args = ap.parse_args()
    rule = AutolabelConfig(sources=(), out=Path("."))
    chosen = [(i, n, c) for i, (n, c) in enumerate(SETTINGS.items())
              if args.settings is None or i in args.settings]
    ocrs = {name: load_ocr(ocfg) for _, name, ocfg in chosen}
    warm = decode_image(sorted(args.folders[0].iterdir())[0])
    for ocr in ocrs.values():
        ocr(warm)  # warm-up: first-run allocations
    raw: dict[str, dict[str, list[dict]]] = {name: {} for name in ocrs}
    for folder in args.folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        files = random.Random(args.seed).sample(files, min(args.n, len(files)))
        for f in files:
            rgb = decode_image(f)
            # Settings take turns on each image, so a shared machine's load hits all alike.
            for name, ocr in ocrs.items():
                t0 = time.perf_counter()
                dets = ocr.detect(rgb)
                t1 = time.perf_counter()
                reads = ocr.recognise(rgb, dets)
                t2 = time.perf_counter()
                raw[name].setdefault(str(folder), []).append({
                    "name": f.name, "det_ms": (t1 - t0) * 1e3, "ms": (t2 - t0) * 1e3,
                    "boxes": [{"points": d.points, "score": d.score, "text": r.text,
                               "conf": r.conf} for d, r in zip(dets, reads, strict=True)],
                    "decision": decide(dets, reads, rule)[0],
                })
    for name, per_folder in raw.items():
        print(f"\n== {name}")
        print(f"{'folder':<28}{'n':>5}{'det ms':>8}{'all ms':>8}{'any box':>9}{'boxes':>7}"
              f"{'text':>6}{'uncert':>7}{'non':>5}")
        for folder, rows in per_folder.items():
            dec = [r["decision"] for r in rows]
            print(f"{folder[-27:]:<28}{len(rows):>5}"
                  f"{statistics.median(r['det_ms'] for r in rows):>8.1f}"
                  f"{statistics.median(r['ms'] for r in rows):>8.1f}"
                  f"{sum(bool(r['boxes']) for r in rows) / len(rows):>9.0%}"
                  f"{statistics.mean(len(r['boxes']) for r in rows):>7.1f}"
                  f"{dec.count('text'):>6}{dec.count('uncertain'):>7}{dec.count('nontext'):>5}")
    if args.dump:
        args.dump.write_text(json.dumps(raw))


if __name__ == "__main__":
    main()
