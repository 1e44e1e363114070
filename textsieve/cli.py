"""Command-line interface. Thin: parse options, build a config, call one library function, render.

Paths and results go to stdout or files; messages, progress and tables go to stderr. Library
errors (:class:`TextsieveError`) become one red line and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one red line on stderr and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
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
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging on stderr.")] = False,
) -> None:
    """textsieve: filter image collections down to the images that contain scene text."""
    _setup_logging(verbose)


def not_yet(command: str, issue: str) -> NoReturn:
    fail(f"'{command}' is not implemented yet ({issue})", 2)


# --------------------------------------------------------------------------------------- labels
@app.command("labels")
def labels_cmd(
    root: Annotated[Path, typer.Argument(help="TextDis-layout root: text/, text_gt/, nontext/.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output JSONL, one object per image.")] = Path(
        "labels.jsonl"
    ),
    rule: Annotated[str, typer.Option(help="Region rule: 'paper' (coverage >= --min-cover) or 'msp' (MSP-Net).")] = "paper",
    min_cover: Annotated[float, typer.Option(help="Coverage a region needs under the 'paper' rule.")] = 0.01,
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


# --------------------------------------------------------------------------------------- train
@app.command("train-teacher")
def train_teacher_cmd() -> None:
    """Train the teacher network on a TextDis-layout root (region BCE)."""
    not_yet("train-teacher", "training issue")


@app.command("distill")
def distill_cmd() -> None:
    """Two-stage distillation of the student from a trained teacher."""
    not_yet("distill", "training issue")


@app.command("eval")
def eval_cmd() -> None:
    """Precision/recall/F, AUC, thresholds and speed of weights on a labelled root."""
    not_yet("eval", "training issue")


# -------------------------------------------------------------------------------------- filter
@app.command("filter")
def filter_cmd() -> None:
    """Walk folders and list (or route) the images that contain text."""
    not_yet("filter", "filter issue")


@app.command("show")
def show_cmd() -> None:
    """Draw 3x3 and 5x5 region probabilities over images."""
    not_yet("show", "filter issue")


# ----------------------------------------------------------------------------------- autolabel
@app.command("autolabel")
def autolabel_cmd() -> None:
    """Label unlabeled photo folders with the PP-OCRv4 detector (TextDis layout out)."""
    not_yet("autolabel", "autolabel issue")
