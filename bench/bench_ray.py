"""Throughput of ``textsieve filter``: local engine vs the Ray engine with 1 and 2 actors.

Runs each configuration ``--repeat`` times, in turns, on a small and on a larger folder (same
shard size, 1 torch thread per worker or actor) and prints medians of: the wall time of the
whole call (listing, worker or actor start-up, scoring, outputs), images/s over it, and on the
larger folder the steady rate (images/s from the first progress report to the last, which
leaves start-up out). Ray is started once, before all runs; that start-up is printed apart.
Weights do not change the speed: without ``--weights`` (and without shipped weights) a random
student is used.

    python bench/bench_ray.py /tmp/raybench/imgs /tmp/raybench/x4 --shard-size 32
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from textsieve.checkpoint import default_weights, save_checkpoint
from textsieve.errors import CheckpointError
from textsieve.filter import FilterConfig, FilterProgress, FilterStats, run_filter
from textsieve.models import StudentNet
from textsieve.ray_engine import RayOptions, run_ray_filter

log = logging.getLogger("bench_ray")
Run = Callable[[Callable[[FilterProgress], None]], FilterStats]


def _weights(given: Path | None, tmp: Path) -> tuple[Path, str]:
    if given is not None:
        return given, str(given)
    try:
        return default_weights(), "shipped"
    except CheckpointError:
        torch.manual_seed(0)
        path = tmp / "random-student.pt"
        save_checkpoint(path, StudentNet(), stage="bench", thresholds={"default": 0.5})
        return path, "random student (speed only)"


def _timed(run: Run) -> tuple[int, float, float]:
    """(images, wall s, steady images/s after the first progress report)."""
    marks: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    stats = run(lambda p: marks.append((time.perf_counter(), p.done)))
    wall = time.perf_counter() - t0
    steady = float("nan")
    if len(marks) >= 2 and marks[-1][0] > marks[0][0]:
        steady = (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
    # Other people's jobs share these cores: the 1-minute load average goes with every figure.
    print(f" {stats.processed} images in {wall:.1f} s, steady {steady:.1f} img/s "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return stats.processed, wall, steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("small", type=Path, help="folder of N images")
    ap.add_argument("large", type=Path, help="folder of more images (e.g. 4 copies of small)")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to the local Ray")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import ray

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        weights, what = _weights(args.weights, tmp)
        print(f"weights: {what}; shard size {args.shard_size}; torch {torch.__version__}; "
              "1 torch thread per worker/actor")

        def local(folder: Path, workers: int) -> Run:
            cfg = FilterConfig(roots=(folder,), weights=weights, shard_size=args.shard_size,
                               threads=1, workers=workers, out=tmp / "out.txt")
            return lambda cb: run_filter(cfg, on_progress=cb)

        def on_ray(folder: Path, actors: int) -> Run:
            cfg = FilterConfig(roots=(folder,), weights=weights, shard_size=args.shard_size,
                               threads=1, out=tmp / "out.txt")
            opts = RayOptions(actors=actors, cpus_per_actor=1, parquet=tmp / "pq")
            return lambda cb: run_ray_filter(cfg, opts, on_progress=cb)

        configs: list[tuple[str, Callable[[Path], Run]]] = [
            ("local, 1 worker", lambda f: local(f, 1)),
            ("local, 2 workers", lambda f: local(f, 2)),
            ("ray, 1 actor", lambda f: on_ray(f, 1)),
            ("ray, 2 actors", lambda f: on_ray(f, 2)),
        ]
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        print(f"ray {ray.__version__} init: {time.perf_counter() - t0:.1f} s (not in the runs)")
        runs: dict[tuple[str, Path], list[tuple[int, float, float]]] = {}
        try:
            for rep in range(args.repeat):  # configurations take turns: load drifts evenly
                for name, make in configs:
                    for folder in (args.small, args.large):
                        log.info("[%d/%d] %s, %s", rep + 1, args.repeat, name, folder)
                        runs.setdefault((name, folder), []).append(_timed(make(folder)))
        finally:
            ray.shutdown()
        print(f"\nmedians of {args.repeat} runs each; steady = images/s after the first "
              "progress report (start-up left out)")
        print(f"{'run':17s} {'N':>5s} {'wall s':>7s} {'img/s':>6s} | {'N':>5s} {'wall s':>7s} "
              f"{'img/s':>6s} {'steady':>7s}")
        for name, _ in configs:
            small, large = runs[(name, args.small)], runs[(name, args.large)]
            n1, n2 = small[0][0], large[0][0]
            w1 = statistics.median(r[1] for r in small)
            w2 = statistics.median(r[1] for r in large)
            st = statistics.median(r[2] for r in large)
            print(f"{name:17s} {n1:5d} {w1:7.1f} {n1 / w1:6.1f} | {n2:5d} {w2:7.1f} "
                  f"{n2 / w2:6.1f} {st:7.1f}")


if __name__ == "__main__":
    main()
