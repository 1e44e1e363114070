"""Does a model see text, or the collection? Scores text-free crops of held-out text photos.

In TextDis-like data the text photos and the non-text photos come from different collections
(cameras, sizes, subjects), so a model can score well on the dev split by recognising the
collection. This script measures that shortcut: for every text photo of ``--data`` with GT it
takes the largest crop that avoids every GT box, ``###`` included
(:func:`textsieve.data.text_free_crop`, the crops ``data.nontext_crops`` trains on), and reports
how often each model calls such a crop "text" at its stored default threshold, next to the
false-positive rate on the real non-text photos and the recall on the text photos. A model
that relies on the text calls few crops text; one that relies on the camera calls many.

Usage::

    python bench/bench_bias.py weights/student.pt weights/teacher_ppocr.pt \
        [--data ../shared/data/dev] [--threads 1]

Prints one Markdown table row per weights file. The crops can contain text that has no GT box
(unlabelled signs), so the crop rate is an upper bound of the shortcut, not zero for a perfect
model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from textsieve.checkpoint import load_model, threshold_of
from textsieve.data import DataConfig, build_samples, load_variant
from textsieve.decision import image_probs
from textsieve.errors import DecodeError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


@torch.inference_mode()
def rates(weights: Path, samples: list, cfg: DataConfig) -> dict[str, float]:
    model, meta = load_model(weights)
    model.eval()
    thr = threshold_of(meta)
    called = {"text": [], "nontext": [], "crop": []}
    t = time.perf_counter()
    for s in samples:
        try:
            item = load_variant(s, cfg=cfg)
        except DecodeError:
            continue
        p = float(image_probs(model(item.image.unsqueeze(0)).logits)[0])
        kind = "crop" if s.crop is not None else ("text" if s.is_text else "nontext")
        called[kind].append(p >= thr)
    out = {k: sum(v) / max(len(v), 1) for k, v in called.items()}
    out.update(threshold=thr, n_crop=len(called["crop"]), seconds=time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DataConfig(nontext_crops=True)
    samples = build_samples([args.data], cfg)
    print(f"# {args.data}: {sum(s.crop is not None for s in samples)} text-free crops of "
          f"{sum(s.is_text and s.crop is None for s in samples)} text photos, "
          f"{sum(not s.is_text and s.crop is None for s in samples)} non-text photos")
    print("| weights | threshold | recall (text photos) | FPR (non-text photos) "
          "| crops called text |")
    print("|---|---|---|---|---|")
    for w in args.weights:
        r = rates(w, samples, cfg)
        print(f"| `{w}` | {r['threshold']:.3f} | {r['text']:.3f} | {r['nontext']:.3f} "
              f"| {r['crop']:.3f} |")


if __name__ == "__main__":
    main()
