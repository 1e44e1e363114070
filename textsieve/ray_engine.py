"""``textsieve filter --engine ray``: the filter's inputs and outputs, scored on a Ray cluster.

Data flow (the listing, shards and scoring code of :mod:`textsieve.filter`):

1. The driver lists the inputs (:func:`~textsieve.walk.list_inputs`, sorted, the run's outputs
   excluded) and cuts them into shards of ``batch_size`` entries (default: ``shard_size``).
2. One shard = one Ray Data block (``from_arrow``): ``path`` (the name's bytes, so non-UTF-8
   names survive Arrow) and ``status`` (set by the listing: such rows are not read).
3. ``map_batches(TextScorer, compute=ActorPoolStrategy(size=actors), num_cpus, batch_size)``:
   each actor loads the model once and scores a shard with :class:`~textsieve.score.Scorer`,
   as a local worker does. Actors read the files: every node must see the input paths.
4. The driver takes the results in order (``preserve_order``), reports progress, routes each
   shard's text images (:mod:`textsieve.route`) and writes the text list and JSONL/CSV scores
   with the local writers (same bytes), and Parquet scores as ``DIR/part-00000.parquet``, ...

There is no journal: ``--resume``, ``--overwrite``, ``--journal`` and ``--keep-journal`` are
refused (Ray retries failed tasks and restarts dead actors itself; a failed run is rerun).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from textsieve.checkpoint import default_weights, load_model, threshold_of
from textsieve.errors import ConfigError, TextsieveError
from textsieve.filter import FilterConfig, FilterError, FilterProgress, FilterStats
from textsieve.output import (
    ScoresWriter,
    atomic_writer,
    optional_text_writer,
    path_record,
    scores_format,
    write_json,
)
from textsieve.ray import TextScorer, require_ray
from textsieve.route import RouteConfig, execute_plan, plan_routes
from textsieve.score import Result, ScoreConfig
from textsieve.walk import Entry, list_inputs, read_path_list

log = logging.getLogger(__name__)

PARQUET_ROWS = 100_000  # rows per Parquet file (whole shards): few, large files
_PART = re.compile(r"part-\d{5}\.parquet")


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine uses the cluster.

    Attributes:
        address: passed to ``ray.init``: None follows Ray's rule (``RAY_ADDRESS``, else a
            cluster started here with ``ray start``, else a new local Ray); ``auto`` joins the
            running cluster; ``local`` always starts a new one; ``host:6379`` or
            ``ray://host:10001`` a given one. A Ray already initialised in this process is
            used as it is.
        actors: scoring actors; None = cluster CPUs // ``cpus_per_actor``.
        cpus_per_actor: CPUs reserved per actor (also its torch threads unless ``--threads``).
        batch_size: rows per actor call (one shard); None = the filter's ``shard_size``, which
            gives the local engine's batches and so bit-identical probabilities.
        parquet: folder for the Parquet scores (``part-00000.parquet``, ...), or None.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    batch_size: int | None = None
    parquet: Path | None = None

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError("--ray-actors must be >= 1")
        if self.cpus_per_actor <= 0:
            raise ConfigError("--ray-cpus-per-actor must be > 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError("--ray-batch-size must be >= 1")


def split_scores(path: Path | None) -> tuple[Path | None, Path | None]:
    """Route a ``--scores`` value: a ``.jsonl``/``.csv`` file, or a Parquet folder.

    Args:
        path: the value given, or None.

    Returns:
        ``(scores_file, parquet_dir)``: a name without extension, or ending in ``.parquet``,
        or an existing folder is a Parquet folder; ``.jsonl``/``.json``/``.ndjson``/``.csv`` a
        file written as by the local engine.

    Raises:
        ConfigError: any other extension.
    """
    if path is None:
        return None, None
    if path.is_dir() or path.suffix.lower() in ("", ".parquet"):
        return None, path
    try:
        scores_format(path)
    except TextsieveError:
        raise ConfigError(f"--scores {path}: use a .jsonl or .csv file, or a folder for Parquet "
                          "parts (a name without extension or ending in .parquet)") from None
    return path, None


# Every FilterConfig field is either honoured or refused (a test keeps this list complete).
HONOURED = ("roots", "from_list", "out", "scores", "regions", "weights", "threshold", "recall",
            "route_mode", "route_dir", "on_conflict", "print0", "threads", "device",
            "batch_size", "shard_size", "max_pixels", "allow_truncated", "follow_symlinks",
            "hidden", "stats")
REFUSED = {
    "resume": "the Ray engine keeps no journal; rerun the command (Ray retries failed tasks "
              "and restarts dead actors by itself)",
    "overwrite": "the Ray engine keeps no journal to overwrite",
    "keep_journal": "the Ray engine keeps no journal",
    "journal": "the Ray engine keeps no journal",
    "workers": "use --ray-actors (and --ray-cpus-per-actor) with --engine ray",
}


def check_supported(cfg: FilterConfig) -> None:
    """Refuse the local-engine options that the Ray engine cannot honour.

    Raises:
        ConfigError: naming the option and what to do instead.
    """
    for name, why in REFUSED.items():
        value = getattr(cfg, name)
        if value not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} is not supported with --engine ray: {why}")


def list_entries(cfg: FilterConfig, parquet: Path | None) -> list[Entry]:
    """The run's sorted listing, as the local engine makes it (its outputs excluded)."""
    from_list = read_path_list(cfg.from_list) if cfg.from_list is not None else []
    outputs = (cfg.out, cfg.scores, cfg.stats, parquet, cfg.route_dir, cfg.journal_dir())
    return list_inputs(cfg.roots, from_list=from_list, follow_symlinks=cfg.follow_symlinks,
                       hidden=cfg.hidden, exclude=[p for p in outputs if p is not None])


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None, log_to_driver: bool) -> Iterator[None]:
    """Use the Ray already initialised here, or start/join one and shut it down afterwards.

    ``log_to_driver=False`` keeps the actors' output off this process's stdout (Ray forwards a
    worker's stdout to the driver's), for runs that write the text list there.
    """
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False,
                 log_to_driver=log_to_driver)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local Ray"
        raise FilterError(f"cannot start or join {where}: {str(e).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _data_context(ray: Any) -> Iterator[None]:
    """Ordered output and no Ray progress bars (we report progress), restored afterwards."""
    ctx = ray.data.DataContext.get_current()
    old = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True  # rows come back in listing order
    ctx.enable_progress_bars = False
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = old


def _shard_tables(shards: list[list[Entry]]) -> list[Any]:
    import pyarrow as pa

    return [pa.table({"path": pa.array([os.fsencode(e.path) for e in s], pa.binary()),
                      "status": pa.array([e.status or "" for e in s], pa.string())})
            for s in shards]


def _results(ray: Any, shards: list[list[Entry]], score_kwargs: dict[str, Any],
             opts: RayOptions, n_actors: int, num_gpus: float) -> Iterator[list[Result]]:
    """Score every shard on the cluster; yields one list of results per shard, in order."""
    ds = ray.data.from_arrow(_shard_tables(shards))
    ds = ds.map_batches(
        TextScorer,
        fn_constructor_kwargs=score_kwargs,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_cpus=opts.cpus_per_actor,
        num_gpus=num_gpus or None,
        batch_size=len(shards[0]),
        batch_format="numpy",
    )
    regions = score_kwargs["regions"]
    k, pending = 0, []
    try:
        batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        for batch in batches:
            for i in range(len(batch["path"])):
                pending.append(_row_result(batch, i, regions))
                if len(pending) == len(shards[k]):
                    got = [r.path for r in pending]
                    if got != [e.path for e in shards[k]]:  # determinism rests on the order
                        raise FilterError(f"Ray returned shard {k} out of order")
                    yield pending
                    k, pending = k + 1, []
    except ray.exceptions.RayError as e:  # an actor could not start, a task failed for good
        raise FilterError(f"Ray run failed: {str(e).strip().splitlines()[-1][:300]}") from None
    if k != len(shards):
        raise FilterError(f"Ray returned {k} of {len(shards)} shards")


def _row_result(batch: dict[str, Any], i: int, regions: bool) -> Result:
    """Row ``i`` of a result batch back into a :class:`Result` (nulls may arrive as NaN)."""
    prob = batch["prob"][i]
    prob = None if prob is None or math.isnan(prob) else float(prob)
    reg = batch["regions"][i] if regions else None
    return Result(os.fsdecode(bytes(batch["path"][i])), str(batch["status"][i]),
                  str(batch["detail"][i]), prob, bool(batch["is_text"][i]),
                  None if reg is None else tuple(float(v) for v in reg))


def _utf8(text: str | None) -> str | None:
    """Arrow strings must be UTF-8: undecodable name bytes become ``\\x..`` escapes."""
    return None if text is None else os.fsencode(text).decode("utf-8", "backslashreplace")


class _ParquetParts:
    """``part-00000.parquet``, ... of whole shards, staged in a hidden folder, put in place at
    the end: a failed run leaves the previous run's parts as they were."""

    def __init__(self, folder: Path, routing: bool, regions: bool) -> None:
        self.folder, self.routing, self.regions = Path(folder), routing, regions
        self.stage = self.folder / f".textsieve-parts-{os.getpid()}"
        self.stage.mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[Result, dict[str, Any] | None]] = []
        self.parts = 0

    def add(self, results: list[Result], routes: dict[str, dict[str, Any]]) -> None:
        self.rows += [(r, routes.get(r.path)) for r in results]
        if len(self.rows) >= PARQUET_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows and self.parts:
            return
        rs = [r for r, _ in self.rows]
        cols: dict[str, Any] = {
            "path": pa.array([_utf8(r.path) for r in rs], pa.string()),
            "prob": pa.array([r.prob for r in rs], pa.float64()),
            "is_text": pa.array([r.is_text for r in rs], pa.bool_()),
            "status": pa.array([r.status for r in rs], pa.string()),
            "detail": pa.array([_utf8(r.detail) for r in rs], pa.string()),
        }
        if self.routing:
            outcomes = [o or {} for _, o in self.rows]
            cols["dest"] = pa.array([_utf8(o.get("dest")) for o in outcomes], pa.string())
            cols["route"] = pa.array([o.get("status") for o in outcomes], pa.string())
        if self.regions:
            cols["regions"] = pa.array([list(r.regions) if r.regions is not None else None
                                        for r in rs], pa.list_(pa.float64()))
        pq.write_table(pa.table(cols), self.stage / f"part-{self.parts:05d}.parquet")
        self.parts += 1
        self.rows = []

    def close(self) -> None:
        """Write the last part, move the parts in place, drop parts of an earlier longer run."""
        self.flush()
        for k in range(self.parts):
            name = f"part-{k:05d}.parquet"
            os.replace(self.stage / name, self.folder / name)
        for name in os.listdir(self.folder):
            if _PART.fullmatch(name) and int(name[5:10]) >= self.parts:
                os.unlink(self.folder / name)
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder (and whatever a failed run left in it)."""
        shutil.rmtree(self.stage, ignore_errors=True)


def _route(results: list[Result], shard: list[Entry],
           route: RouteConfig | None) -> dict[str, dict[str, Any]]:
    if route is None:
        return {}
    rel = {e.path: e.rel for e in shard}
    plan = plan_routes([(r.path, rel[r.path]) for r in results if r.is_text], route)
    return {o["src"]: o for o in execute_plan(plan, route)}


class _Sink:
    """The run's outputs, fed shard by shard in listing order (as the local engine's merge)."""

    def __init__(self, cfg: FilterConfig, stack: contextlib.ExitStack, routing: bool,
                 parquet: Path | None, stdout: IO[bytes] | None, stats: FilterStats) -> None:
        self.cfg, self.routing, self.stats = cfg, routing, stats
        self.status: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()
        fmt = scores_format(cfg.scores) if cfg.scores is not None else "jsonl"
        sf = stack.enter_context(optional_text_writer(cfg.scores))
        self.writer = ScoresWriter(sf, fmt, routing, cfg.regions) if sf is not None else None
        self.parts = None
        if parquet is not None:
            self.parts = _ParquetParts(parquet, routing, cfg.regions)
            stack.callback(self.parts.discard)  # on failure too
        if cfg.out is not None:
            self.out = stack.enter_context(atomic_writer(Path(cfg.out)))
        else:
            self.out = stdout if stdout is not None else sys.stdout.buffer

    def add(self, results: list[Result], outcome: dict[str, dict[str, Any]]) -> None:
        self.routes.update(o["status"] for o in outcome.values())
        if self.parts is not None:
            self.parts.add(results, outcome)
        for r in results:
            self.status[r.status] += 1
            if self.writer is not None:
                self.writer.write(r, outcome.get(r.path) if self.routing else None)
            if not r.is_text:
                continue
            self.stats.text += 1
            rec = path_record(r.path, self.cfg.print0)
            if rec is None:
                self.stats.unlisted += 1
                log.warning("left out of --out (newline in the name; use --print0 or the "
                            "scores): %r", r.path)
            else:
                self.out.write(rec)
        self.stats.processed += len(results)

    def close(self) -> None:
        if self.parts is not None:
            self.parts.close()
        self.out.flush()
        self.stats.by_status = dict(sorted(self.status.items()))
        self.stats.routes = dict(sorted(self.routes.items()))
        self.stats.ok = self.status.get("ok", 0)


def _actors(ray: Any, opts: RayOptions, n_shards: int) -> int:
    cpus = float(ray.cluster_resources().get("CPU", 1))
    n = min(opts.actors or max(1, int(cpus // opts.cpus_per_actor)), n_shards)
    if n * opts.cpus_per_actor > cpus:
        log.warning("%d actor(s) x %g CPU exceed the cluster's %g CPUs: Ray waits until they "
                    "fit", n, opts.cpus_per_actor, cpus)
    return n


def run_ray_filter(
    cfg: FilterConfig,
    opts: RayOptions | None = None,
    on_progress: Callable[[FilterProgress], None] | None = None,
    stdout: IO[bytes] | None = None,
) -> FilterStats:
    """Run the filter with Ray Data (see the module docstring).

    Args:
        cfg: the filter config, as for :func:`textsieve.filter.run_filter`; journal options and
            ``workers`` are refused.
        opts: cluster address, actors, CPUs per actor, rows per call, Parquet folder.
        on_progress: called with cumulative counts as shards come back.
        stdout: where text paths go when ``cfg.out`` is None (default: ``sys.stdout.buffer``).

    Returns:
        Statistics of the run (``workers`` is the number of actors).

    Raises:
        MissingExtraError: Ray Data is not installed.
        TextsieveError: refused options, unusable weights or inputs, Ray failures.
    """
    opts = opts or RayOptions()
    check_supported(cfg)
    ray = require_ray()
    t0 = time.perf_counter()
    weights = Path(cfg.weights) if cfg.weights is not None else default_weights()
    _, meta = load_model(weights)  # fail fast, here, on a bad file
    threshold = cfg.threshold if cfg.threshold is not None else threshold_of(meta, cfg.recall)
    route = (RouteConfig(cfg.route_mode, Path(cfg.route_dir), cfg.on_conflict)
             if cfg.route_mode is not None and cfg.route_dir is not None else None)
    entries = list_entries(cfg, opts.parquet)
    size = opts.batch_size or cfg.shard_size
    shards = [entries[i:i + size] for i in range(0, len(entries), size)]
    threads = cfg.threads or max(1, math.floor(opts.cpus_per_actor))
    score_kwargs = {
        "weights": str(weights), "threshold": threshold, "device": cfg.device,
        "threads": threads, "regions": cfg.regions,
        "options": ScoreConfig(max_pixels=cfg.max_pixels, allow_truncated=cfg.allow_truncated,
                               batch_size=cfg.batch_size),
    }
    stats = FilterStats(total=len(entries), threads=threads, device=cfg.device,
                        threshold=threshold, weights=str(weights))
    with contextlib.ExitStack() as stack:
        sink = _Sink(cfg, stack, route is not None, opts.parquet, stdout, stats)
        if shards:
            stack.enter_context(_ray_session(ray, opts.address, log_to_driver=cfg.out is not None))
            stack.enter_context(_data_context(ray))
            stats.workers = _actors(ray, opts, len(shards))
            gpus = 1.0 if cfg.device.startswith("cuda") else 0.0
            log.info("Ray: %d actor(s) x %g CPU, %d shard(s) of %d", stats.workers,
                     opts.cpus_per_actor, len(shards), size)
            batches = _results(ray, shards, score_kwargs, opts, stats.workers, gpus)
            for k, results in enumerate(batches):
                sink.add(results, _route(results, shards[k], route))
                if on_progress is not None:
                    errors = stats.processed - sink.status.get("ok", 0)
                    on_progress(FilterProgress(len(entries), stats.processed, stats.text, errors))
        sink.close()
    stats.elapsed_s = time.perf_counter() - t0
    stats.images_per_s = stats.processed / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
    if cfg.stats is not None:
        write_json(Path(cfg.stats), asdict(stats))
    return stats


__all__ = ["RayOptions", "check_supported", "list_entries", "run_ray_filter", "split_scores"]
