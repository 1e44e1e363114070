"""Throughput of ``textsieve filter`` against the decode-only limit, on a realistic crawl.

Builds (once, cached under /tmp, never in the repository) two crawls from the real photos of
``../shared/data`` (train split, text and non-text), upscaled with Lanczos:

- ``1mp``: ~1 MP JPEGs (quality 85), the setting of the >= 150 images/s target;
- ``mix``: log-uniform 0.3-12 MP JPEGs plus ~10% PNGs (what a web crawl looks like).

For each crawl, with the same number of worker processes (default: all cores) it reports:

1. decode-only images/s: ``decode_image(path, min_short=256)`` (DCT-downscaled JPEG decode,
   EXIF, RGB conversion): the physical limit of any pipeline that must look at the pixels;
2. decode+resize images/s: the above plus the resize to the network size: everything the
   filter does except the network;
3. filter images/s: ``run_filter`` with the weights (end to end, and steady state after the
   workers have started and loaded the model);
4. the ratios, and the peak resident memory of the filter's main process and largest worker;
5. where the time goes in one process, one thread, as CPU ms/image (decode, resize, network in
   its inference form and in its plain training form, the whole scorer), which does not depend
   on the machine's load, and the 2-core throughput it projects.

Usage: ``python bench/bench_filter.py [--workers N] [--n-1mp 600] [--n-mix 200]``.
Uses ``weights/student.pt`` when it exists, else a random-init student (same speed: the
architecture is fixed; it says which).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from textsieve.checkpoint import load_model, save_checkpoint
from textsieve.decode import decode_image, open_image
from textsieve.filter import FilterConfig, FilterProgress, default_workers, run_filter
from textsieve.models import StudentNet
from textsieve.preprocess import resize_rgb, target_size
from textsieve.score import ScoreConfig, Scorer, load_for_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CACHE = Path(tempfile.gettempdir()) / "textsieve-bench-crawl"
REPO_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "student.pt"


def sources(n: int, seed: int) -> list[Path]:
    photos = sorted((DATA / "train" / "text").glob("*.jpg"))
    photos += sorted((DATA / "train" / "nontext").glob("*.jpg"))
    if not photos:
        sys.exit(f"no photos under {DATA}/train: see shared/data/README.md")
    rng = random.Random(seed)
    return [rng.choice(photos) for _ in range(n)]


def build(name: str, n: int, seed: int) -> list[Path]:
    """Create (or reuse) a crawl of ``n`` upscaled photos; returns its files, sorted."""
    folder = CACHE / f"{name}-{n}-{seed}"
    done = folder / ".complete"
    if done.exists():
        return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".complete")
    rng = random.Random(seed)
    for i, src in enumerate(sources(n, seed)):
        img = Image.open(src).convert("RGB")
        mp_target = 1.0 if name == "1mp" else float(np.exp(rng.uniform(np.log(0.3), np.log(12))))
        scale = (mp_target * 1e6 / (img.width * img.height)) ** 0.5
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
        sub = folder / f"part{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        if name == "mix" and rng.random() < 0.1:
            img.save(sub / f"img{i:05d}.png", compress_level=6)
        else:
            img.save(sub / f"img{i:05d}.jpg", quality=85)
    done.touch()
    return build(name, n, seed)


def _decode_chunk(args: tuple[list[str], bool]) -> int:
    paths, resize = args
    cfg = ScoreConfig()
    for p in paths:
        if resize:
            load_for_model(p, cfg)
        else:
            decode_image(p, min_short=256)
    return len(paths)


def decode_rate(paths: list[Path], workers: int, resize: bool) -> float:
    """images/s of decoding alone with ``workers`` warm processes (start-up not counted)."""
    chunks = [([str(p) for p in paths[i:i + 16]], resize) for i in range(0, len(paths), 16)]
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_decode_chunk, [([], False)] * workers * 2))  # start the workers
        t = time.perf_counter()
        n = sum(pool.map(_decode_chunk, chunks))
        return n / (time.perf_counter() - t)


def _vm_hwm_mb(pid: int | str) -> float:
    """Peak resident memory of a live process (VmHWM; unlike ru_maxrss, not inherited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children() -> list[str]:
    kids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += (task / "children").read_text().split()
        except OSError:
            continue
    return kids


def _filter_child(root: str, n: int, weights: str, workers: int, out: str, q: object) -> None:
    import threading

    peaks: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:  # workers' VmHWM only grows: the last sample before exit is the peak
        while not stop.wait(0.1):
            for pid in _children():
                peaks[pid] = max(peaks.get(pid, 0.0), _vm_hwm_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    marks: list[tuple[float, int]] = []

    def on_progress(p: FilterProgress) -> None:
        marks.append((time.perf_counter(), p.done))

    cfg = FilterConfig(roots=(Path(root),), out=Path(out) / "texty.txt",
                       scores=Path(out) / "scores.jsonl", weights=Path(weights), workers=workers,
                       overwrite=True)
    stats = run_filter(cfg, on_progress=on_progress)
    assert stats.total == n, (stats.total, n)
    (t0, d0), (t1, d1) = marks[0], marks[-1]
    steady = (d1 - d0) / (t1 - t0) if t1 > t0 else float("nan")
    stop.set()
    sampler.join()
    worker_mb = max(peaks.values(), default=0.0)
    q.put((stats.images_per_s, steady, _vm_hwm_mb("self"), worker_mb))  # type: ignore[attr-defined]


def filter_rate(paths: list[Path], root: Path, weights: Path, workers: int,
                out: Path) -> tuple[float, float, float, float]:
    """(end-to-end, steady-state) images/s of run_filter over ``root``, and the peak RSS (MB)
    of its main process and of its largest worker. Runs in a fresh process so that the memory
    figures are the filter's own."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_filter_child,
                       args=(str(root), len(paths), str(weights), workers, str(out), q))
    proc.start()
    result = q.get()
    proc.join()
    return result


def breakdown(paths: list[Path], weights: Path) -> dict[str, float]:
    """CPU ms/image of each stage in this process, one thread (batch size 8).

    CPU time (``time.process_time``), not wall time: on a shared machine it is what a
    dedicated core would need, so ``cores / total`` projects the throughput of an idle machine.
    """
    torch.set_num_threads(1)
    model, _ = load_model(weights)
    scorer = Scorer(model, ScoreConfig())
    sample = [str(p) for p in paths[:200]]
    cfg = scorer.cfg
    clock = time.process_time
    scorer.score(sample[:16])  # warm-up: page cache, oneDNN kernels
    t = clock()
    scorer.score(sample)
    t_all = clock() - t
    t_dec = t_resize = 0.0
    imgs = []
    for p in sample:  # the two halves of load_for_model, timed apart
        t = clock()
        img = open_image(p, min_short=cfg.short_side, max_pixels=cfg.max_pixels)
        t_dec += clock() - t
        t = clock()
        size = target_size(img.width, img.height, cfg.short_side, cfg.max_long)
        imgs.append(resize_rgb(np.asarray(img), size))
        t_resize += clock() - t
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for a in imgs:
        groups.setdefault(a.shape, []).append(a)
    batches = [np.stack(g[i:i + 8]) for g in groups.values() for i in range(0, len(g), 8)]
    t = clock()
    for b in batches:
        scorer.probs(b)
    t_net = clock() - t
    # The training form of the network on the same batches (float NCHW input), for comparison.
    floats = [torch.from_numpy(b).permute(0, 3, 1, 2).float().div(255) for b in batches]
    with torch.inference_mode():
        model(floats[0])
        t = clock()
        for x in floats:
            model(x)
        t_plain = clock() - t
    n = len(sample)
    return {"decode": 1e3 * t_dec / n, "resize": 1e3 * t_resize / n,
            "network": 1e3 * t_net / n, "plain": 1e3 * t_plain / n,
            "filter": 1e3 * t_all / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--n-1mp", type=int, default=600)
    ap.add_argument("--n-mix", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if REPO_WEIGHTS.is_file():
        weights, which = REPO_WEIGHTS, f"shipped {REPO_WEIGHTS}"
    else:
        torch.manual_seed(0)
        weights = CACHE / "random_student.pt"
        save_checkpoint(weights, StudentNet(), stage="bench", thresholds={"default": 0.5})
        which = "random-init student (weights/student.pt not found; same architecture, same speed)"
    load = os.getloadavg()
    print(f"# bench_filter: {args.workers} workers x 1 thread, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, load average before start {load[0]:.1f}")
    print(f"# weights: {which}")
    rows = []
    for name, n in (("1mp", args.n_1mp), ("mix", args.n_mix)):
        t = time.perf_counter()
        paths = build(name, n, args.seed)
        root = paths[0].parents[1]
        mpix = [Image.open(p).width * Image.open(p).height / 1e6 for p in paths]
        print(f"# crawl {name}: {len(paths)} files, {np.mean(mpix):.2f} MP mean "
              f"({min(mpix):.2f}-{max(mpix):.2f}), "
              f"{sum(p.suffix == '.png' for p in paths)} PNG, at {root} "
              f"(ready in {time.perf_counter() - t:.0f} s)")
        dec = decode_rate(paths, args.workers, resize=False)
        dec_rs = decode_rate(paths, args.workers, resize=True)
        with tempfile.TemporaryDirectory() as out:
            e2e, steady, main_mb, worker_mb = filter_rate(paths, root, weights, args.workers,
                                                          Path(out))
        parts = breakdown(paths, weights)
        rows.append((name, dec, dec_rs, e2e, steady, parts, main_mb, worker_mb))
    print()
    print("Wall clock, this machine as it is:")
    print()
    print("| crawl | decode-only img/s | decode+resize img/s | filter img/s (end-to-end) "
          "| filter img/s (steady) | steady / decode-only | steady / decode+resize |")
    print("|---|---|---|---|---|---|---|")
    for name, dec, dec_rs, e2e, steady, *_ in rows:
        print(f"| {name} | {dec:.0f} | {dec_rs:.0f} | {e2e:.0f} | {steady:.0f} | "
              f"{steady / dec:.0%} | {steady / dec_rs:.0%} |")
    print()
    print("CPU time per image, one process, one thread (load-independent):")
    print()
    print("| crawl | decode ms | resize ms | network ms (inference form) | network ms (plain "
          "StudentNet) | score_paths ms (all) | projected img/s on idle cores: decode-only "
          "| filter | filter / decode-only |")
    print("|---|---|---|---|---|---|---|---|---|")
    cores = args.workers
    for name, *_, parts, _, _ in rows:
        dec, fil = cores * 1e3 / parts["decode"], cores * 1e3 / parts["filter"]
        print(f"| {name} | {parts['decode']:.2f} | {parts['resize']:.2f} | "
              f"{parts['network']:.2f} | {parts['plain']:.2f} | {parts['filter']:.2f} | "
              f"{dec:.0f} | {fil:.0f} | {fil / dec:.0%} |")
    print()
    for name, *_, main_mb, worker_mb in rows:
        print(f"peak RSS of the filter run ({name}): main process {main_mb:.0f} MB, "
              f"largest worker {worker_mb:.0f} MB")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} (>{os.cpu_count()}: shared, loaded machine)")


if __name__ == "__main__":
    main()
