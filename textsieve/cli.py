"""Command-line interface. Thin: parse options, build a config, call one library function, render.

Paths and results go to stdout or files; messages, progress and tables go to stderr. Library
errors (:class:`TextsieveError`) become one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from textsieve import __version__
from textsieve.errors import TextsieveError

app = typer.Typer(
    name="textsieve",
    help="Decide fast, on a plain CPU, whether natural images contain scene text "
    "(Zhao et al., ICDAR 2019: region classifier distilled from a teacher).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one red line on stderr and exit with ``code``."""
    # Escaped: messages carry paths and hints such as "pip install 'textsieve[ocr]'" whose
    # brackets rich would otherwise swallow as markup.
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True,
              soft_wrap=True)
    raise typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )


def _version(value: bool) -> None:
    if value:
        typer.echo(f"textsieve {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")
    ] = False,
) -> None:
    """textsieve: filter image collections down to the images that contain scene text."""
    _setup_logging(verbose)


# --------------------------------------------------------------------------------------- labels
@app.command("labels")
def labels_cmd(
    root: Annotated[Path, typer.Argument(help="TextDis-layout root: text/, text_gt/, nontext/.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output JSONL, one object per image.")
    ] = Path("labels.jsonl"),
    rule: Annotated[
        str,
        typer.Option(help="Region rule: 'paper' (coverage >= --min-cover) or 'msp' (MSP-Net)."),
    ] = "paper",
    min_cover: Annotated[
        float, typer.Option(help="Coverage a region needs under the 'paper' rule.")
    ] = 0.01,
) -> None:
    """Region labels (3x3 then 5x5, row-major) from ground-truth text boxes, as JSONL."""
    from rich.progress import Progress

    from textsieve.annotations import scan_root
    from textsieve.config import LabelConfig
    from textsieve.labels import write_labels

    try:
        cfg = LabelConfig(rule=rule, min_cover=min_cover)
        total = len(scan_root(root))
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("labelling", total=total)
            stats = write_labels(root, out, cfg, on_progress=lambda n: progress.advance(task, n))
    except TextsieveError as e:
        fail(str(e))
    table = Table(title=f"labels -> {out}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("images", str(stats.images))
    table.add_row("text images", str(stats.text_images))
    table.add_row("text images with GT", str(stats.with_gt))
    table.add_row("positive 3x3 regions", str(stats.positive_regions[3]))
    table.add_row("positive 5x5 regions", str(stats.positive_regions[5]))
    table.add_row("GT problems", str(len(stats.problems)))
    err.print(table)
    for p in stats.problems[:20]:
        err.print(f"[yellow]warning:[/yellow] {p}", highlight=False)


# ----------------------------------------------------------------------------------------- info
@app.command("info")
def info_cmd(
    weights: Annotated[
        Path | None, typer.Option("--weights", "-w", help="Also describe this weights file.")
    ] = None,
) -> None:
    """Parameter counts of the teacher and student networks (and of a weights file)."""
    from textsieve.config import TeacherConfig
    from textsieve.models import StudentNet, TeacherNet, count_params

    table = Table(title="networks (default configs)")
    for col in ("network", "parameters", "paper", "difference"):
        table.add_column(col, justify="right" if col != "network" else "left")
    for name, model, paper in (
        ("teacher (vgg16)", TeacherNet(TeacherConfig(backbone="vgg16")), 16.03e6),
        ("student", StudentNet(), 0.087e6),
    ):
        n = count_params(model)
        table.add_row(name, f"{n:,}", f"{paper:,.0f}", f"{n / paper - 1:+.1%}")
    typer.echo(f"teacher (vgg16) parameters: {count_params(TeacherNet()):,}")
    typer.echo(f"student parameters: {count_params(StudentNet()):,}")
    err.print(table)
    if weights is not None:
        from textsieve.checkpoint import load_model

        try:
            model, meta = load_model(weights)
        except TextsieveError as e:
            fail(str(e))
        typer.echo(f"{weights}: arch={meta['arch']} params={count_params(model):,} "
                   f"stage={meta.get('stage')} version={meta.get('version')}")
        for name, value in (meta.get("thresholds") or {}).items():
            typer.echo(f"threshold {name}: {value:.4f}")


# --------------------------------------------------------------------------------------- train
def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


def _with_training_progress(run: Callable[[Callable[[Any], None]], T],
                            label: Callable[[Any], str]) -> T:
    """Call ``run(on_progress)`` under a rich progress display, one bar per (stage, epoch).

    ``on_progress`` receives :class:`textsieve.train.loop.TrainEvent` s; ``label`` names the bar.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} img/s"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        tasks: dict[tuple[str, int], Any] = {}

        def show(e: Any) -> None:
            key = (e.stage, e.epoch)
            if key not in tasks:
                tasks[key] = progress.add_task(label(e), total=e.total, loss="-", rate="-")
            loss = "-" if e.loss != e.loss else f"{e.loss:.4f}"
            rate = "-" if e.images_per_s != e.images_per_s else f"{e.images_per_s:.0f}"
            progress.update(tasks[key], completed=e.done, total=e.total, loss=loss, rate=rate)

        return run(show)


def _run_summary(title: str, epochs_run: int, best_label: str, best_epoch: int,
                 best: dict[str, Any] | None, keys: tuple[str, ...],
                 seconds: tuple[tuple[str, float], ...]) -> Table:
    """The end-of-run table of ``train-teacher`` and ``distill``: the best epoch's metrics."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("epochs run", str(epochs_run))
    table.add_row(best_label, str(best_epoch))
    for key in keys:
        if best is not None and best.get(key) is not None:
            table.add_row(key.replace("_", " "), f"{best[key]:.4f}")
    for name, value in seconds:
        table.add_row(name, f"{value:.1f}")
    return table


@app.command("train-teacher")
def train_teacher_cmd(
    data: Annotated[
        list[Path], typer.Option("--data", help="TextDis-layout training root (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (checkpoints, logs).")],
    val: Annotated[
        Path | None, typer.Option("--val", help="Held-out TextDis root validated every epoch.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config (default: the packaged "
                     "teacher_<backbone>.yaml)."),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="'vgg16' (paper, end to end) or 'ppocr' (frozen PP-OCRv4 "
                                 "trunk, cached features; needs textsieve[ocr]).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (overrides the config).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (overrides the config).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pictures per step.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init, order and augmentation.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    device: Annotated[str | None, typer.Option(help="'cpu' or 'cuda'.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch/onnxruntime threads.")] = None,
    init: Annotated[
        Path | None, typer.Option(help="Local ImageNet VGG16 state dict (vgg16 only).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature cache of the ppocr trunk (default: "
                                  "~/.cache/textsieve/features).")
    ] = None,
) -> None:
    """Train the teacher network on TextDis-layout roots (region BCE, paper section III-A)."""
    from importlib import resources

    from textsieve.config import load_config
    from textsieve.train.teacher import TrainConfig, fit_teacher

    try:
        if config is None:
            known = backbone in ("vgg16", "ppocr")  # else the config check names the error
            name = f"teacher_{backbone if known else 'vgg16'}.yaml"
            config = Path(str(resources.files("textsieve") / "configs" / name))
        overrides = {
            "data_roots": [str(p) for p in data], "val_root": _opt_str(val), "out_dir": str(out),
            "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed, "device": device,
            "threads": threads, "init": _opt_str(init), "cache_dir": _opt_str(cache_dir),
        }
        if backbone is not None:
            overrides["teacher"] = {"backbone": backbone}
        cfg = load_config(TrainConfig, config, overrides)
        result = _with_training_progress(
            lambda show: fit_teacher(cfg, on_progress=show, resume=resume),
            lambda e: "caching features" if e.stage == "features" else f"epoch {e.epoch}")
    except TextsieveError as e:
        fail(str(e))
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), None)
    err.print(_run_summary(
        f"teacher ({cfg.backbone}) -> {result.out_dir}", len(result.history),
        f"best epoch (by {result.monitor})", result.best_epoch, best,
        ("image_precision", "image_recall", "image_f1", "image_best_f1", "image_auc",
         "region_f1", "train_loss"),
        (("feature caching (s)", result.feature_seconds), ("training (s)", result.train_seconds))))
    typer.echo(str(result.best_path))


@app.command("distill")
def distill_cmd(
    data: Annotated[
        list[Path], typer.Option("--data", help="TextDis-layout training root (repeatable).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (checkpoints, logs).")],
    teacher: Annotated[
        Path | None, typer.Option("--teacher", help="Trained teacher checkpoint (all modes "
                                  "but 'hard').")
    ] = None,
    val: Annotated[
        Path | None, typer.Option("--val", help="Held-out TextDis root scored every stage-2 "
                                  "epoch (selects best.pt).")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Table II: 'full' (stage 1 + 2), 'soft-adv' (stage 2 "
                                 "only), 'soft' (L_K only), 'hard' (region labels, no teacher).")
    ] = None,
    stages: Annotated[
        str | None, typer.Option(help="Stages to run now, e.g. '1' or '1,2' (default: all of "
                                 "the mode's).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config (default: the packaged "
                                  "distill.yaml, the paper's settings).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Stage-2 epochs (overrides the config).")
                      ] = None,
    epochs_stage1: Annotated[
        int | None, typer.Option(help="Stage-1 epochs (overrides the config).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Pictures per step.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of init, order and augmentation.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoints in OUT.")] = False,
    device: Annotated[str | None, typer.Option(help="'cpu' or 'cuda'.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch intra-op threads.")] = None,
    workers: Annotated[int | None, typer.Option(help="Picture-decoding processes.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Cache of teacher outputs and ppocr trunk features "
                                  "(default: ~/.cache/textsieve/features).")
    ] = None,
) -> None:
    """Distil the student from a frozen teacher (paper III-C/D: AB pre-training, then soft
    labels + BEGAN adversarial feature distillation)."""
    from importlib import resources

    from textsieve.config import load_config
    from textsieve.train.distill import DistillConfig, distill

    try:
        stage_list = None
        if stages is not None:
            try:
                stage_list = [int(s) for s in stages.split(",") if s.strip()]
            except ValueError:
                fail(f"--stages must be a comma-separated list such as '1,2', got {stages!r}")
        if config is None:
            config = Path(str(resources.files("textsieve") / "configs" / "distill.yaml"))
        overrides = {
            "teacher": _opt_str(teacher), "data_roots": [str(p) for p in data],
            "val_root": _opt_str(val), "out_dir": str(out), "mode": mode, "stages": stage_list,
            "epochs_stage2": epochs, "epochs_stage1": epochs_stage1, "batch_size": batch_size,
            "seed": seed, "device": device, "threads": threads, "workers": workers,
            "cache_dir": _opt_str(cache_dir),
        }
        cfg = load_config(DistillConfig, config, overrides)
        result = _with_training_progress(
            lambda show: distill(cfg, on_progress=show, resume=resume),
            lambda e: "teacher outputs" if e.stage == "targets" else f"{e.stage} epoch {e.epoch}")
    except TextsieveError as e:
        fail(str(e))
    best = next((h for h in result.history
                 if h["stage"] == 2 and h["epoch"] == result.best_epoch), None)
    err.print(_run_summary(
        f"distill ({cfg.mode}) -> {result.out_dir}", len(result.history),
        f"best stage-2 epoch (by {result.monitor})", result.best_epoch, best,
        ("image_precision", "image_recall", "image_f1", "image_best_f1", "image_best_threshold",
         "image_auc", "region_f1", "train_loss", "k_t"),
        (("teacher outputs (s)", result.target_seconds), ("training (s)", result.train_seconds))))
    if result.best_path is not None:
        typer.echo(str(result.best_path))


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option("--data", help="TextDis-layout root to evaluate on.")],
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Checkpoint (student or teacher); default: shipped."),
    ] = None,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
    threads: Annotated[
        int | None,
        typer.Option(help="Torch threads, also the onnxruntime threads of a ppocr teacher "
                     "(default: torch's own setting)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Decision threshold (default: stored with the weights).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write metrics.json, pr_curve.png and worst-FP/FN sheets here."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N images of each class (quick look).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics JSON on stdout.")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(help="Score with a baseline instead of weights: 'detector' (PP-OCRv4, "
                     "best box score; needs the ocr extra)."),
    ] = None,
) -> None:
    """Precision/recall/F, AUC, thresholds and speed of weights on a labelled root."""
    import json

    from rich.progress import Progress

    from textsieve.annotations import scan_root
    from textsieve.evaluate import EvalConfig, evaluate, select_samples
    from textsieve.report import result_tables, write_report

    try:
        cfg = EvalConfig(data=data, weights=weights, device=device, threads=threads,
                         threshold=threshold, limit=limit)
        total = len(select_samples(scan_root(data), limit))
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("evaluating", total=total)
            scorer = None
            if baseline is not None:
                from textsieve.baseline import make_baseline

                scorer = make_baseline(baseline, threads=threads)
            result = evaluate(cfg, on_progress=lambda n: progress.advance(task, n),
                              scorer=scorer)
        written = write_report(result, report) if report is not None else []
    except TextsieveError as e:
        fail(str(e))
    for table in result_tables(result):
        err.print(table)
    for path in written:
        err.print(f"wrote {path}", highlight=False)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1, allow_nan=False))


# -------------------------------------------------------------------------------------- filter
@app.command("filter")
def filter_cmd(
    roots: Annotated[
        list[Path] | None, typer.Argument(help="Folders (walked recursively) and image files.")
    ] = None,
    out: Annotated[
        str, typer.Option("--out", "-o", help="File for the paths of text images ('-': stdout).")
    ] = "-",
    from_list: Annotated[
        str | None, typer.Option("--from-list", help="File of paths, one per line ('-': stdin).")
    ] = None,
    scores: Annotated[
        Path | None, typer.Option(help="Per-image scores: .jsonl or .csv (by extension); "
                                  "with --engine ray also a folder (Parquet parts).")
    ] = None,
    regions: Annotated[
        bool, typer.Option(help="Add the 34 region probabilities to --scores.")
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Checkpoint (default: shipped student)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Decision threshold (default: stored with the weights).")
    ] = None,
    recall: Annotated[
        float | None,
        typer.Option(help="Use the threshold preset calibrated for this recall (e.g. 0.99), "
                     "stored with the weights; see `textsieve info -w WEIGHTS`."),
    ] = None,
    copy_to: Annotated[
        Path | None, typer.Option(help="Copy text images under this folder.")
    ] = None,
    link_to: Annotated[
        Path | None, typer.Option(help="Symlink text images under this folder.")
    ] = None,
    move_to: Annotated[
        Path | None, typer.Option(help="Move text images under this folder.")
    ] = None,
    on_conflict: Annotated[
        str, typer.Option(help="Destination name taken by another file: 'suffix' (name~1.jpg) "
                          "or 'skip'.")
    ] = "suffix",
    print0: Annotated[bool, typer.Option("--print0", help="NUL-separated --out.")] = False,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (0: in this process; default: cores).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per worker (default: 1 with several "
                                 "workers, else all cores).")
    ] = None,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images of equal size per forward pass.")] = 8,
    shard_size: Annotated[int, typer.Option(help="Images per shard (unit of resume).")] = 256,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse images whose header declares more pixels (bombs).")
    ] = 100_000_000,
    allow_truncated: Annotated[
        bool, typer.Option(help="Score what is there of truncated files.")
    ] = False,
    follow_symlinks: Annotated[
        bool, typer.Option(help="Follow symbolic links out of the given roots.")
    ] = False,
    hidden: Annotated[bool, typer.Option(help="Include names starting with '.'.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run from its journal.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Discard an existing journal, start over.")
    ] = False,
    keep_journal: Annotated[bool, typer.Option(help="Keep the journal after the run.")] = False,
    journal: Annotated[
        Path | None, typer.Option(help="Journal folder (default: beside the first output).")
    ] = None,
    stats_file: Annotated[
        Path | None, typer.Option("--stats", help="Write run statistics as JSON.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")
    ] = False,
    engine: Annotated[
        str, typer.Option(help="'local' (worker processes) or 'ray' (Ray Data; see docs/ray.md).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster: 'auto' (the running one), 'local' (a new "
                                 "one) or an address; default: RAY_ADDRESS, else a cluster "
                                 "started here, else a new local Ray.")
    ] = None,
    ray_actors: Annotated[
        int | None, typer.Option(help="Scoring actors (default: cluster CPUs / CPUs per actor).")
    ] = None,
    ray_cpus_per_actor: Annotated[
        float | None, typer.Option(help="CPUs per actor, also its torch threads (default: 1).")
    ] = None,
    ray_batch_size: Annotated[
        int | None, typer.Option(help="Images per actor call (default: --shard-size, which "
                                 "gives the local engine's exact probabilities).")
    ] = None,
) -> None:
    """Walk folders and list (or copy/link/move) the images that contain text.

    Exit codes: 0 done (bad files are counted, not fatal), 1 nothing could be processed,
    2 usage error. Interrupted runs continue with --resume.
    """
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from textsieve.filter import FilterConfig, FilterProgress, run_filter

    routes = [(m, d) for m, d in (("copy", copy_to), ("link", link_to), ("move", move_to)) if d]
    if len(routes) > 1:
        fail("use only one of --copy-to, --link-to, --move-to")
    ray_opts = (ray_address, ray_actors, ray_cpus_per_actor, ray_batch_size)
    if engine not in ("local", "ray"):
        fail(f"--engine must be 'local' or 'ray', got {engine!r}")
    if engine == "local" and any(v is not None for v in ray_opts):
        fail("--ray-address/--ray-actors/--ray-cpus-per-actor/--ray-batch-size need --engine ray")
    try:
        parquet = None
        if engine == "ray":
            from textsieve.ray_engine import split_scores

            scores, parquet = split_scores(scores)  # a folder means Parquet parts
        cfg = FilterConfig(
            roots=tuple(roots or ()), from_list=from_list, out=None if out == "-" else Path(out),
            scores=scores, regions=regions, weights=weights, threshold=threshold, recall=recall,
            route_mode=routes[0][0] if routes else None,
            route_dir=routes[0][1] if routes else None,
            on_conflict=on_conflict, print0=print0, workers=workers, threads=threads,
            device=device, batch_size=batch_size, shard_size=shard_size, max_pixels=max_pixels,
            allow_truncated=allow_truncated, follow_symlinks=follow_symlinks, hidden=hidden,
            resume=resume, overwrite=overwrite, keep_journal=keep_journal, journal=journal,
            stats=stats_file,
        )
        if cfg.device.startswith("cuda") and engine == "local":  # Ray: the actors' GPUs
            import torch

            if not torch.cuda.is_available():
                fail("--device cuda: no CUDA device is available")
        columns = (TextColumn("filter"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]} img/s  text {task.fields[text]}  "
                              "errors {task.fields[errors]}"), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True, disable=quiet) as progress:
            task = progress.add_task("filter", total=None, rate="-", text=0, errors=0)
            first: list[float] = []

            def show(p: FilterProgress) -> None:
                now = time.perf_counter()
                if not first:
                    first[:] = [now, p.done]  # resumed images arrive at once: not a rate
                dt = now - first[0]
                rate = f"{(p.done - first[1]) / dt:.0f}" if dt > 1.0 else "-"
                progress.update(task, total=p.total, completed=p.done, rate=rate, text=p.text,
                                errors=p.errors)

            if engine == "ray":
                from textsieve import ray_engine

                opts = ray_engine.RayOptions(
                    address=ray_address, actors=ray_actors,
                    cpus_per_actor=1.0 if ray_cpus_per_actor is None else ray_cpus_per_actor,
                    batch_size=ray_batch_size,
                    parquet=parquet)
                stats = ray_engine.run_ray_filter(cfg, opts, on_progress=show)
            else:
                stats = run_filter(cfg, on_progress=show)
    except TextsieveError as e:
        fail(str(e))
    except KeyboardInterrupt:
        if engine == "ray":
            fail("interrupted (the Ray engine keeps no journal: rerun the command)", 130)
        fail("interrupted; finished shards are kept: rerun the same command with --resume", 130)
    if not quiet:
        table = Table(title="filter summary")
        table.add_column("what")
        table.add_column("count", justify="right")
        rows = [(f"status {k}", f"{n:,}") for k, n in stats.by_status.items()]
        rows.append(("[bold]text images[/bold]", f"{stats.text:,}"))
        rows += [(f"route {k}", f"{n:,}") for k, n in stats.routes.items()]
        if stats.unlisted:
            rows.append(("left out of --out (newline in name)", f"{stats.unlisted:,}"))
        rows += [
            ("resumed from journal", f"{stats.resumed:,}"),
            ("scored in this run", f"{stats.processed:,}"),
            ("elapsed", f"{stats.elapsed_s:.1f} s"),
            ("throughput", f"{stats.images_per_s:.1f} images/s"),
            ("workers x threads", f"{stats.workers} x {stats.threads} ({stats.device})"),
        ]
        for row in rows:
            table.add_row(*row)
        err.print(table)
    if stats.ok == 0:
        fail("nothing could be processed" if stats.total else "no input files found", 1)


@app.command("show")
def show_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files to draw.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for IMAGE.regions.png files.")],
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Checkpoint (default: shipped student)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Decision threshold (default: stored with the weights).")
    ] = None,
    device: Annotated[str, typer.Option(help="'cpu' or 'cuda'.")] = "cpu",
) -> None:
    """Draw 3x3 and 5x5 region probabilities over images (as in the paper's Fig. 5)."""
    from textsieve.checkpoint import default_weights, load_model, threshold_of
    from textsieve.score import ScoreConfig, Scorer
    from textsieve.show import show_images

    try:
        model, meta = load_model(weights if weights is not None else default_weights(), device)
        th = threshold if threshold is not None else threshold_of(meta)
        scorer = Scorer(model, ScoreConfig(threshold=th, regions=True, batch_size=1,
                                           device=device))
        items = show_images([str(p) for p in images], out, scorer)
    except TextsieveError as e:
        fail(str(e))
    for it in items:
        if it.output is None:
            err.print(f"[yellow]{it.result.status}:[/yellow] {it.path}: {it.result.detail}",
                      highlight=False, markup=True)
        else:
            verdict = "text" if it.result.is_text else "no text"
            err.print(f"{it.path}: p={it.result.prob:.3f} {verdict} -> {it.output}",
                      highlight=False)
    if not any(it.output for it in items):
        fail("no image could be drawn", 1)


# ----------------------------------------------------------------------------------- autolabel
@app.command("autolabel")
def autolabel_cmd(
    sources: Annotated[
        list[Path], typer.Argument(exists=True, help="Photo folders (recursive) or image files.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="TextDis-layout root to write (resumed if present).")
    ],
    min_score: Annotated[
        float, typer.Option(help="Detector score a box needs to confirm text.")
    ] = 0.5,
    min_chars: Annotated[
        int, typer.Option(help="Letters/digits the recognised string of a confirming box needs.")
    ] = 2,
    min_conf: Annotated[
        float, typer.Option(help="Recogniser confidence a confirming box needs.")
    ] = 0.8,
    review: Annotated[
        Path | None,
        typer.Option(help="Write contact sheets of the decisions here (PNG; more pages as -2, -3).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes (1: this process).")] = 1,
    threads: Annotated[int, typer.Option(help="onnxruntime threads per process.")] = 1,
    limit_side: Annotated[
        int, typer.Option(help="Detector input size in px (see --limit-type).")
    ] = 960,
    limit_type: Annotated[
        str, typer.Option(help="'long': scale the long side to --limit-side (default); 'max': "
                          "only shrink; 'min': enlarge the short side (the wheel's own, 736).")
    ] = "long",
) -> None:
    """Label unlabeled photo folders with the PP-OCRv4 detector (TextDis layout out)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from textsieve.autolabel import AutolabelConfig, list_sources, run_autolabel
    from textsieve.ocr import OcrConfig

    try:
        cfg = AutolabelConfig(
            sources=tuple(sources), out=out, min_score=min_score, min_chars=min_chars,
            min_conf=min_conf, workers=workers, threads=threads, review=review,
            ocr=OcrConfig(limit_side=limit_side, limit_type=limit_type),
        )
        total = len(list_sources(cfg.sources, exclude=out))
        with Progress(*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as progress:
            task = progress.add_task("autolabel", total=total)
            stats = run_autolabel(cfg, on_progress=lambda n: progress.advance(task, n))
    except TextsieveError as e:
        fail(str(e))
    table = Table(title=f"autolabel -> {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("text", "nontext", "uncertain", "error"):
        table.add_row(key, str(stats.counts.get(key, 0)))
    table.add_row("resumed (done before)", str(stats.resumed))
    table.add_row("labelled now", str(stats.processed))
    table.add_row("ms/image (wall)", f"{stats.ms_per_image:.0f}")
    table.add_row("ms/image (models, per process)", f"{stats.model_ms_per_image:.0f}")
    err.print(table)
    for kind, n in sorted(stats.errors.items()):
        err.print(f"[yellow]warning:[/yellow] {n} image(s) skipped: {kind}", highlight=False)
    for page in stats.review_pages:
        err.print(f"wrote {page}", highlight=False)


# ----------------------------------------------------------------------------------- calibrate
@app.command("calibrate")
def calibrate_cmd(
    weights: Annotated[Path, typer.Option("--weights", "-w", help="Checkpoint to calibrate.")],
    data: Annotated[
        Path, typer.Option("--data", help="Held-out TextDis-layout root (e.g. the dev split).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Calibrated copy (training state stripped).")
    ],
    min_recall: Annotated[
        float, typer.Option(help="Recall floor of the default threshold (best F above it).")
    ] = 0.95,
    threads: Annotated[int | None, typer.Option(help="Torch threads for scoring.")] = None,
) -> None:
    """Choose decision thresholds on labelled data and store them with the weights.

    Stores the default threshold (best image F with recall >= --min-recall) and presets for
    recall 0.95 and 0.99, used by `filter --recall R` and as the default of `filter` and `eval`.
    """
    from rich.progress import Progress

    from textsieve.annotations import scan_root
    from textsieve.calibrate import CalibrateConfig, calibrate

    if not 0.0 < min_recall <= 1.0:
        fail(f"--min-recall must be in (0, 1], got {min_recall}")
    try:
        total = len(scan_root(data))
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("scoring", total=total)
            cal = calibrate(
                CalibrateConfig(weights=weights, data=data, out=out, min_recall=min_recall,
                                threads=threads),
                on_progress=lambda n: progress.advance(task, n),
            )
    except TextsieveError as e:
        fail(str(e))
    table = Table(title=f"thresholds -> {out}")
    for col in ("preset", "threshold", "precision", "recall", "F"):
        table.add_column(col, justify="right" if col != "preset" else "left")
    for name, th in cal.thresholds.items():
        m = cal.metrics["at_threshold"][name]
        table.add_row(name, f"{th:.4f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      f"{m['f1']:.3f}")
    err.print(table)
