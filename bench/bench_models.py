"""Forward-pass speed of the student, the teacher and an FTC-sized MobileNetV2, in one run.

Random weights (speed does not depend on them), batch 1, eval mode, ``torch.inference_mode``.
For each input size and thread count: warm-up passes, then timed rounds with
``time.perf_counter``, interleaved across the networks; the figure is the median ms/image over
``--repeats`` rounds (the median and the interleaving resist other processes on a shared
machine; the load average is printed with each table). Prints ms/image,
parameters and the ratios teacher/student and mobilenet/student. The ppocr teacher (frozen
PP-OCRv4 trunk in onnxruntime + region head) is timed too when ``textsieve.models.ppocr`` can
attach its trunk; its onnxruntime session uses the same thread count.

The MobileNetV2 is the network of the Fast-Text-Classifier (FTC, Kralicek et al.), the nearest
prior art: the standard inverted-residual table at width 1.0 without the final 1x1 conv to 1280,
its 160- and 320-channel maps max-pooled to 3x3 and 5x5 and concatenated (480 channels), then
a shared per-region classifier 480 -> 1000 -> 2. Defined here from the table (no torchvision).

    python bench/bench_models.py                      # 256x352 (and 256x256), 1 and 2 threads
    python bench/bench_models.py --sizes 256x352 --threads 1 --iters 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from textsieve.config import TeacherConfig
from textsieve.errors import TextsieveError
from textsieve.models import StudentNet, TeacherNet, count_params

# MobileNetV2 inverted-residual table (Sandler et al. 2018): expansion t, channels c,
# repeats n, first stride s.
MOBILENET_V2_TABLE: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn(c_in, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   conv_bn(hidden, c_out, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class FTCMobileNetV2(nn.Module):
    """FTC-sized MobileNetV2 region classifier: (B, 3, H, W) -> (B, 34, 2) region logits."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        c_in = 32
        for t, c, n, s in MOBILENET_V2_TABLE[:-1]:
            for i in range(n):
                blocks.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        self.stage1 = nn.Sequential(*blocks)  # ends with the 160-channel map (stride 32)
        t, c, _, s = MOBILENET_V2_TABLE[-1]
        self.stage2 = InvertedResidual(c_in, c, s, t)  # 320 channels
        self.classifier = nn.Sequential(nn.Linear(160 + 320, 1000), nn.Linear(1000, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        cells = []
        for g in (3, 5):
            pooled = torch.cat([F.adaptive_max_pool2d(f1, g), F.adaptive_max_pool2d(f2, g)], 1)
            cells.append(pooled.flatten(2).transpose(1, 2))  # (B, g*g, 480)
        return self.classifier(torch.cat(cells, 1))  # (B, 34, 2)


def time_round(fn: Callable[[torch.Tensor], object], x: torch.Tensor, iters: int) -> float:
    """Mean ms per call of ``fn(x)`` over ``iters`` consecutive calls."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(iters):
            fn(x)
        return (time.perf_counter() - t0) * 1000.0 / iters


def warm(fn: Callable[[torch.Tensor], object], x: torch.Tensor, n: int) -> None:
    with torch.inference_mode():
        for _ in range(n):
            fn(x)


def build_models(threads: int) -> dict[str, tuple[nn.Module | None, int, str]]:
    """name -> (model or None when unavailable, parameter count, note)."""
    torch.manual_seed(0)
    models: dict[str, tuple[nn.Module | None, int, str]] = {}
    student = StudentNet().eval()
    models["student"] = (student, count_params(student), "")
    teacher = TeacherNet(TeacherConfig(backbone="vgg16")).eval()
    models["teacher (vgg16)"] = (teacher, count_params(teacher), "")
    mobile = FTCMobileNetV2().eval()
    models["FTC MobileNetV2"] = (mobile, count_params(mobile), "")
    try:
        from textsieve.models.ppocr import attach_trunk

        ppocr = TeacherNet(TeacherConfig(backbone="ppocr")).eval()
        trunk = attach_trunk(ppocr, threads=threads)
        trunk_params = _onnx_params(trunk.path)
        note = "head params + onnx trunk" if trunk_params else "head params only"
        models["teacher (ppocr)"] = (ppocr, count_params(ppocr) + (trunk_params or 0), note)
    except (ImportError, TextsieveError) as e:
        models["teacher (ppocr)"] = (None, 0, f"skipped: {e}")
    return models


def _onnx_params(path: object) -> int | None:
    """Stored weights of an ONNX graph: initializers plus Constant-node tensors (the PP-OCRv4
    export keeps all its weights in Constant nodes, so initializers alone count 0)."""
    try:
        import numpy as np
        import onnx
    except ImportError:
        return None
    graph = onnx.load(str(path), load_external_data=False).graph
    tensors = list(graph.initializer)
    tensors += [a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute
                if a.HasField("t")]
    return int(sum(int(np.prod(t.dims)) for t in tensors))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["256x352", "256x256"],
                    help="input sizes HxW (default: 256x352 256x256)")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30, help="passes per timed round (small nets)")
    ap.add_argument("--teacher-iters", type=int, default=2,
                    help="passes per timed round for the teachers (about 100x slower)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, CPU, batch 1, warm-up {args.warmup}, median of "
          f"{args.repeats} rounds, rounds interleaved across networks; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for threads in args.threads:
        torch.set_num_threads(threads)
        models = build_models(threads)
        runnable = {k: v for k, v in models.items() if v[0] is not None}
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            x = torch.rand(1, 3, h, w)
            iters = {k: args.teacher_iters if k.startswith("teacher") else args.iters
                     for k in runnable}
            for name, (model, _, _) in runnable.items():
                warm(model, x, args.warmup if iters[name] == args.iters else 1)
            # Round-robin: each round times every network once, so a burst of load from other
            # processes hits all of them alike and the ratios stay meaningful.
            rounds: dict[str, list[float]] = {k: [] for k in runnable}
            for _ in range(args.repeats):
                for name, (model, _, _) in runnable.items():
                    rounds[name].append(time_round(model, x, iters[name]))
            print(f"\n== {h}x{w} (HxW), {torch.get_num_threads()} thread(s), "
                  f"load average {os.getloadavg()[0]:.1f}")
            print(f"{'network':<18}{'params':>12}{'ms/image':>11}{'x student':>11}  note")
            base = statistics.median(rounds["student"])
            for name, (model, params, note) in models.items():
                if model is None:
                    print(f"{name:<18}{'':>12}{'':>11}{'':>11}  {note}")
                    continue
                ms = statistics.median(rounds[name])
                print(f"{name:<18}{params:>12,}{ms:>11.2f}{ms / base:>11.1f}  {note}")


if __name__ == "__main__":
    main()
