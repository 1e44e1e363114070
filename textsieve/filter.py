"""``textsieve filter``: list inputs, score them in worker processes, write outputs, resumably.

Data flow: :func:`~textsieve.walk.list_inputs` (sorted) -> shards of ``shard_size`` entries ->
workers (``spawn``; model loaded once per worker; :class:`~textsieve.score.Scorer`) -> the main
process writes each shard's results to the journal, routes its text images, and at the end
merges all shards in order into the outputs (:mod:`textsieve.output`).

Determinism: shards are fixed by the sorted listing and the shard size, batches are formed
inside a shard, and the merge is in shard order, so the outputs do not depend on the number of
workers, on completion order, or on whether the run was interrupted and resumed.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from textsieve import __version__
from textsieve.checkpoint import default_weights, load_model, threshold_of
from textsieve.decode import DEFAULT_MAX_PIXELS
from textsieve.errors import ConfigError, TextsieveError
from textsieve.output import (
    Journal,
    file_digest,
    merge_outputs,
    read_jsonl,
    scores_format,
    write_json,
    write_jsonl,
)
from textsieve.route import CONFLICTS, MODES, RouteConfig, execute_plan, plan_routes
from textsieve.score import Result, ScoreConfig, Scorer, score_paths
from textsieve.walk import Entry, list_inputs, read_path_list

log = logging.getLogger(__name__)

__all__ = ["FilterConfig", "FilterError", "FilterProgress", "FilterStats", "run_filter",
           "score_paths", "Result", "ScoreConfig", "default_workers"]

PROGRESS_EVERY = 16  # images per progress message from a worker
_Step = Callable[[int, list[Result]], None]


class FilterError(TextsieveError):
    """The run cannot go on (a worker process died, the journal belongs to another run...)."""


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """One worker process per available core."""
    return available_cores()


@dataclass(frozen=True)
class FilterConfig:
    """Everything one filter run needs (see docs/filter.md for the user-facing meaning).

    Attributes:
        roots: folders (walked recursively) and single files.
        from_list: a file of paths, one per line (or NUL-separated); ``-`` = stdin.
        out: file receiving the paths of text images; None = stdout.
        scores: per-image scores file, ``.jsonl`` or ``.csv``.
        regions: add the 34 region probabilities to the scores.
        weights: checkpoint; None = the shipped student.
        threshold: decision threshold; None = the one stored with the weights.
        route_mode: ``copy``, ``link`` or ``move`` the text images to ``route_dir``.
        route_dir: destination folder of routing.
        on_conflict: ``suffix`` or ``skip`` when a different file has the destination name.
        print0: NUL-separated ``out`` instead of lines.
        workers: worker processes; 0 = in this process; None = one per core.
        threads: torch threads per worker; None = 1 with several workers, else all cores.
        device: ``cpu`` or ``cuda``.
        batch_size: images of equal network size per forward pass.
        shard_size: images per shard (unit of work, of resume and of journal files).
        max_pixels: decompression-bomb limit.
        allow_truncated: score truncated files instead of giving them status ``truncated``.
        follow_symlinks: follow symbolic links out of the roots.
        hidden: include names starting with ``.``.
        resume: continue the run recorded in the journal.
        overwrite: discard an existing journal and start over.
        keep_journal: keep the journal after a finished run.
        journal: journal folder; None = beside the first output.
        stats: write run statistics (JSON) to this file.
    """

    roots: tuple[Path, ...] = ()
    from_list: str | None = None
    out: Path | None = None
    scores: Path | None = None
    regions: bool = False
    weights: Path | None = None
    threshold: float | None = None
    recall: float | None = None
    route_mode: str | None = None
    route_dir: Path | None = None
    on_conflict: str = "suffix"
    print0: bool = False
    workers: int | None = None
    threads: int | None = None
    device: str = "cpu"
    batch_size: int = 8
    shard_size: int = 256
    max_pixels: int = DEFAULT_MAX_PIXELS
    allow_truncated: bool = False
    follow_symlinks: bool = False
    hidden: bool = False
    resume: bool = False
    overwrite: bool = False
    keep_journal: bool = False
    journal: Path | None = None
    stats: Path | None = None

    def __post_init__(self) -> None:
        if not self.roots and self.from_list is None:
            raise ConfigError("give at least one folder or file, or --from-list")
        if (self.route_mode is None) != (self.route_dir is None):
            raise ConfigError("routing needs both a mode and a destination folder")
        if self.route_mode is not None and self.route_mode not in MODES:
            raise ConfigError(f"unknown routing mode {self.route_mode!r}")
        if self.on_conflict not in CONFLICTS:
            raise ConfigError(f"--on-conflict must be one of {', '.join(CONFLICTS)}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.threshold is not None and self.recall is not None:
            raise ConfigError("give --threshold or --recall, not both")
        for name in ("batch_size", "shard_size", "max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1")
        if self.workers is not None and self.workers < 0:
            raise ConfigError("--workers must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be >= 1")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.scores is not None:
            scores_format(self.scores)

    @property
    def n_workers(self) -> int:
        return default_workers() if self.workers is None else self.workers

    @property
    def n_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        return 1 if self.n_workers > 1 else available_cores()

    def journal_dir(self) -> Path:
        """The journal folder: explicit, else beside the first file output."""
        if self.journal is not None:
            return Path(self.journal)
        for p in (self.out, self.scores, self.stats):
            if p is not None:
                return Path(f"{p}.journal")
        return Path("textsieve-filter.journal")


@dataclass(frozen=True)
class FilterProgress:
    """Counts passed to ``on_progress`` (cumulative over this run and the resumed part)."""

    total: int
    done: int
    text: int
    errors: int


@dataclass
class FilterStats:
    """What a run did. ``by_status`` and ``routes`` cover the whole listing (resumed included).

    Attributes:
        total: listed inputs.
        processed: inputs scored in this run (not taken from the journal).
        resumed: inputs whose results came from the journal.
        ok: inputs scored successfully.
        text: text images.
        by_status: inputs per status.
        routes: routing outcomes per status.
        unlisted: text images left out of a line-mode ``--out`` (name contains a newline).
        elapsed_s: wall time of this run.
        images_per_s: ``processed / elapsed_s``.
        workers, threads, device, threshold, weights: the settings used.
        worker_threads: torch threads reported by each worker process (pid -> threads).
    """

    total: int = 0
    processed: int = 0
    resumed: int = 0
    ok: int = 0
    text: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    unlisted: int = 0
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    workers: int = 0
    threads: int = 0
    device: str = "cpu"
    threshold: float = 0.5
    weights: str = ""
    worker_threads: dict[int, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ workers
_SCORER: Scorer | None = None
_QUEUE: Any = None


def _init_worker(weights: str, score_cfg: ScoreConfig, threads: int, q: Any) -> None:
    """Pool initializer: threads first (before any torch work), then the model, once."""
    global _SCORER, _QUEUE
    # Ctrl-C reaches the whole process group: the main process handles it and stops the
    # workers, which would otherwise each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    model, _ = load_model(Path(weights), score_cfg.device)
    _SCORER, _QUEUE = Scorer(model, score_cfg), q
    q.put(("worker", os.getpid(), torch.get_num_threads()))


def _progress_sink(q: Any) -> tuple[Callable[[Result], None], Callable[[], None]]:
    counts = [0, 0, 0]

    def on_item(r: Result) -> None:
        counts[0] += 1
        counts[1] += r.is_text
        counts[2] += r.status != "ok"
        if counts[0] >= PROGRESS_EVERY:
            flush()

    def flush() -> None:
        if counts[0]:
            q.put(("progress", *counts))
            counts[:] = [0, 0, 0]

    return on_item, flush


def _score_shard(k: int, entries: list[Entry]) -> tuple[int, list[Result]]:
    assert _SCORER is not None, "worker not initialised"
    on_item, flush = _progress_sink(_QUEUE)
    results = _SCORER.score(entries, on_item)
    flush()
    return k, results


# --------------------------------------------------------------------------------------- run
def _fingerprint(cfg: FilterConfig, weights: Path, threshold: float) -> dict[str, Any]:
    """What must match for a journal to be resumed (workers and threads may change)."""
    lst = cfg.from_list
    list_id = None
    if lst is not None:
        list_id = "stdin" if lst == "-" else [os.path.abspath(lst), file_digest(Path(lst))]
    keys = ("regions", "on_conflict", "print0", "device", "batch_size", "shard_size",
            "max_pixels", "allow_truncated", "follow_symlinks", "hidden")
    fp = {k: getattr(cfg, k) for k in keys}
    absp = lambda p: None if p is None else os.path.abspath(p)  # noqa: E731
    fp.update(
        version=__version__, roots=[absp(r) for r in cfg.roots], from_list=list_id,
        out=absp(cfg.out), scores=absp(cfg.scores), route_mode=cfg.route_mode,
        route_dir=absp(cfg.route_dir), weights=file_digest(weights), threshold=threshold,
    )
    return fp


def _open_journal(cfg: FilterConfig, fp: dict[str, Any]) -> tuple[Journal, list[Entry]]:
    """Resume the journal, or list the inputs into a fresh one."""
    journal = Journal(cfg.journal_dir())
    if journal.check(fp, resume=cfg.resume, overwrite=cfg.overwrite):
        log.info("resuming from %s", journal.root)
        return journal, journal.entries()
    from_list = read_path_list(cfg.from_list) if cfg.from_list is not None else []
    exclude = [journal.root, *(p for p in (cfg.out, cfg.scores, cfg.stats) if p is not None)]
    if cfg.route_dir is not None:
        exclude.append(cfg.route_dir)  # never re-list what this run routes into a root
    entries = list_inputs(cfg.roots, from_list=from_list, follow_symlinks=cfg.follow_symlinks,
                          hidden=cfg.hidden, exclude=exclude)
    journal.create(fp, entries, cfg.shard_size)
    return journal, entries


def _route_shard(journal: Journal, k: int, results: list[Result], entries: list[Entry],
                 route: RouteConfig) -> None:
    """Plan (saved first), execute, then write the outcomes, which mark the shard done."""
    if not journal.plan_path(k).exists():
        rel = {e.path: e.rel for e in entries}
        items = [(r.path, rel[r.path]) for r in results if r.is_text]
        write_jsonl(journal.plan_path(k), plan_routes(items, route))
    plan = read_jsonl(journal.plan_path(k))
    write_jsonl(journal.routed_path(k), execute_plan(plan, route))


def run_filter(
    cfg: FilterConfig,
    on_progress: Callable[[FilterProgress], None] | None = None,
    stdout: IO[bytes] | None = None,
) -> FilterStats:
    """Run the filter (see the module docstring).

    Args:
        cfg: the run's config.
        on_progress: called with cumulative counts as images finish.
        stdout: where text paths go when ``cfg.out`` is None (default: ``sys.stdout.buffer``).

    Returns:
        Statistics of the run; the outputs are on disk.

    Raises:
        TextsieveError: unusable weights, inputs or journal; a worker process died.
    """
    t0 = time.perf_counter()
    weights = Path(cfg.weights) if cfg.weights is not None else default_weights()
    _, meta = load_model(weights)  # fail fast, in this process, on a bad file
    threshold = cfg.threshold if cfg.threshold is not None else threshold_of(meta, cfg.recall)
    score_cfg = ScoreConfig(threshold=threshold, max_pixels=cfg.max_pixels,
                            allow_truncated=cfg.allow_truncated, batch_size=cfg.batch_size,
                            regions=cfg.regions, device=cfg.device)
    route = (RouteConfig(cfg.route_mode, Path(cfg.route_dir), cfg.on_conflict)
             if cfg.route_mode is not None and cfg.route_dir is not None else None)
    journal, entries = _open_journal(cfg, _fingerprint(cfg, weights, threshold))
    shards = [entries[i:i + cfg.shard_size] for i in range(0, len(entries), cfg.shard_size)]
    stats = FilterStats(total=len(entries), workers=cfg.n_workers, threads=cfg.n_threads,
                        device=cfg.device, threshold=threshold, weights=str(weights))
    prog = [0, 0, 0]

    def report(done: int, text: int, errors: int) -> None:
        prog[0] += done
        prog[1] += text
        prog[2] += errors
        if on_progress is not None:
            on_progress(FilterProgress(len(entries), *prog))

    # Routing goes strictly in shard order (suffix choices depend on what earlier shards put
    # in place), whatever order shards finish in, and whether they finished before a kill.
    to_route = [k for k in range(len(shards))
                if route is not None and not journal.routed_path(k).exists()]
    ready: dict[int, list[Result]] = {}

    def on_shard(k: int, results: list[Result]) -> None:
        if not journal.has_results(k):
            journal.write_results(k, results)  # at once: a kill loses no finished shard
            stats.processed += len(results)
        ready[k] = results
        while to_route and to_route[0] in ready:
            j = to_route.pop(0)
            _route_shard(journal, j, ready.pop(j), shards[j], route)  # type: ignore[arg-type]
        for j in [j for j in ready if not to_route or j < to_route[0]]:
            del ready[j]

    todo: list[int] = []
    for k in range(len(shards)):
        if journal.has_results(k):
            res = journal.read_results(k)
            stats.resumed += len(res)
            report(len(res), sum(r.is_text for r in res), sum(r.status != "ok" for r in res))
            on_shard(k, res)
        else:
            todo.append(k)
    if todo and cfg.n_workers == 0:
        _run_inline(cfg, weights, score_cfg, shards, todo, on_shard, report, stats)
    elif todo:
        _run_pool(cfg, weights, score_cfg, shards, todo, on_shard, report, stats)
    counts = merge_outputs(journal, len(shards), out=cfg.out, stdout=stdout, scores=cfg.scores,
                           print0=cfg.print0, regions=cfg.regions, routing=route is not None)
    stats.by_status, stats.routes = counts.by_status, counts.routes
    stats.ok, stats.text, stats.unlisted = counts.ok, counts.text, counts.unlisted
    stats.elapsed_s = time.perf_counter() - t0
    stats.images_per_s = stats.processed / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    if cfg.stats is not None:
        write_json(Path(cfg.stats), asdict(stats))
    if not cfg.keep_journal:
        journal.remove()
    return stats


def _run_inline(cfg: FilterConfig, weights: Path, score_cfg: ScoreConfig,
                shards: list[list[Entry]], todo: list[int], on_shard: _Step,
                report: Callable[[int, int, int], None], stats: FilterStats) -> None:
    """Workers = 0: score in this process (tests, debugging); torch threads are restored."""
    old = torch.get_num_threads()
    torch.set_num_threads(cfg.n_threads)
    try:
        model, _ = load_model(weights, cfg.device)
        scorer = Scorer(model, score_cfg)
        stats.worker_threads[os.getpid()] = torch.get_num_threads()
        on_item = lambda r: report(1, int(r.is_text), int(r.status != "ok"))  # noqa: E731
        for k in todo:
            on_shard(k, scorer.score(shards[k], on_item))
    finally:
        torch.set_num_threads(old)


def _run_pool(cfg: FilterConfig, weights: Path, score_cfg: ScoreConfig,
              shards: list[list[Entry]], todo: list[int], on_shard: _Step,
              report: Callable[[int, int, int], None], stats: FilterStats) -> None:
    """Spawn pool; shards submitted in order, at most two per worker in flight (bounded memory).

    Results are journaled as soon as a shard finishes, routing happens in shard order. A worker
    that dies (killed, out of memory) stops the run with a message instead of hanging it.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    n = max(1, min(cfg.n_workers, len(todo)))

    def drain() -> None:
        while True:
            try:
                msg = q.get_nowait()
            except queue.Empty:
                return
            if msg[0] == "worker":
                stats.worker_threads[msg[1]] = msg[2]
            else:
                report(*msg[1:])

    in_flight: dict[cf.Future[tuple[int, list[Result]]], int] = {}
    it = iter(todo)
    with cf.ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                initargs=(str(weights), score_cfg, cfg.n_threads, q)) as pool:
        try:
            while True:
                while len(in_flight) < 2 * n:
                    k = next(it, None)
                    if k is None:
                        break
                    in_flight[pool.submit(_score_shard, k, shards[k])] = k
                if not in_flight:
                    break
                done, _ = cf.wait(in_flight, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                drain()
                for fut in sorted(done, key=in_flight.__getitem__):
                    k = in_flight.pop(fut)
                    on_shard(*fut.result())
        except cf.process.BrokenProcessPool:
            raise FilterError("a worker process died (out of memory? killed?); finished shards "
                              "are kept: rerun with --resume") from None
        except BaseException:
            # Ctrl-C or an error here: stop the workers now instead of letting the executor
            # finish the shards in flight (its public API has no terminate).
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            drain()
