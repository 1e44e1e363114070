"""Filter outputs: the resumable journal, atomic writers, and the final deterministic merge.

Journal layout (a folder beside the first output, e.g. ``texty.txt.journal/``)::

    listing.jsonl            the sorted input listing, one entry per line (written once)
    manifest.json            fingerprint of inputs and config, shard size and count (written
                             after the listing: a journal without it is incomplete)
    shard-00042.jsonl        results of shard 42 (written atomically when it is scored)
    shard-00042.plan.jsonl   routing plan of shard 42 (before any file is touched)
    shard-00042.routed.jsonl routing outcomes of shard 42 (the shard's done marker when routing)

Every file is written to a temporary name in the same folder, flushed, and renamed over its
final name (``os.replace``), so a run killed at any moment leaves either the old or the new
file, never a torn one. Paths are stored as JSON strings with ``ensure_ascii``: non-UTF-8 names
(surrogate escapes) and names with newlines survive the round trip exactly.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from textsieve.errors import TextsieveError
from textsieve.regions import GRIDS
from textsieve.score import Result
from textsieve.walk import Entry

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
PROB_DIGITS = 6  # probabilities are written rounded: stable bytes, no false precision
REGION_COLUMNS = [f"r{g}_{i}" for g in GRIDS for i in range(g * g)]


class JournalError(TextsieveError):
    """The journal cannot be used (another run's, incomplete, or unreadable)."""


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_writer(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Write one JSON value per line (ASCII-escaped), atomically."""
    with atomic_writer(path, "w", encoding="ascii") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True, separators=(",", ":")) + "\n")


def read_jsonl(path: Path) -> list[Any]:
    """Read a file written by :func:`write_jsonl`."""
    with open(path, encoding="ascii") as f:
        return [json.loads(line) for line in f if line.strip()]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (weights and path lists go into the run fingerprint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def result_to_row(r: Result) -> list[Any]:
    return [r.path, r.status, r.detail, r.prob, r.is_text,
            list(r.regions) if r.regions is not None else None]


def row_to_result(row: list[Any]) -> Result:
    path, status, detail, prob, is_text, regions = row
    return Result(path, status, detail, prob, bool(is_text),
                  tuple(regions) if regions is not None else None)


class Journal:
    """The on-disk state of one filter run (see the module docstring for the layout).

    Args:
        root: the journal folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def exists(self) -> bool:
        """Whether a folder is there at all (complete or not)."""
        return self.root.exists()

    def manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the journal is incomplete (killed while listing)."""
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise JournalError(f"cannot read {self.manifest_path}: {e}") from None

    def check(self, fingerprint: dict[str, Any], *, resume: bool, overwrite: bool) -> bool:
        """Decide whether to resume: True to resume, False to start a fresh journal.

        Raises:
            JournalError: a journal is there and neither ``resume`` nor ``overwrite`` was
                given, or ``resume`` was given but the journal's run had other inputs/config.
        """
        manifest = self.manifest() if self.exists() else None
        if overwrite or (manifest is None and resume):
            return False
        if manifest is None:
            if self.exists():
                raise JournalError(f"{self.root} exists but is incomplete; pass --overwrite")
            return False
        if not resume:
            raise JournalError(f"{self.root} holds the journal of an earlier run; pass --resume "
                               "to continue it or --overwrite to start over")
        old = manifest.get("fingerprint", {})
        diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if diff or manifest.get("journal_version") != JOURNAL_VERSION:
            raise JournalError(f"{self.root} was made by a run with different "
                               f"{', '.join(diff) or 'journal format'}; pass --overwrite to "
                               "start over")
        return True

    def create(self, fingerprint: dict[str, Any], entries: list[Entry], shard_size: int) -> None:
        """Start a fresh journal: listing first, manifest last."""
        self.remove()
        self.root.mkdir(parents=True)
        write_jsonl(self.root / "listing.jsonl", ([e.path, e.rel, e.status] for e in entries))
        n_shards = (len(entries) + shard_size - 1) // shard_size
        write_json(self.manifest_path, {
            "journal_version": JOURNAL_VERSION, "fingerprint": fingerprint,
            "total": len(entries), "shard_size": shard_size, "shards": n_shards,
        })

    def entries(self) -> list[Entry]:
        """The listing stored when the run started (a resumed run never walks again)."""
        try:
            return [Entry(p, rel, st) for p, rel, st in read_jsonl(self.root / "listing.jsonl")]
        except (OSError, ValueError) as e:
            raise JournalError(f"cannot read the journal listing: {e}") from None

    def _shard(self, k: int, kind: str) -> Path:
        return self.root / f"shard-{k:05d}{kind}.jsonl"

    def has_results(self, k: int) -> bool:
        return self._shard(k, "").exists()

    def write_results(self, k: int, results: list[Result]) -> None:
        write_jsonl(self._shard(k, ""), (result_to_row(r) for r in results))

    def read_results(self, k: int) -> list[Result]:
        return [row_to_result(row) for row in read_jsonl(self._shard(k, ""))]

    def plan_path(self, k: int) -> Path:
        return self._shard(k, ".plan")

    def routed_path(self, k: int) -> Path:
        return self._shard(k, ".routed")

    def remove(self) -> None:
        """Delete the journal folder (after a finished run, or on --overwrite)."""
        if self.root.exists():
            shutil.rmtree(self.root)


def _fmt_prob(p: float | None) -> float | None:
    return None if p is None else round(p, PROB_DIGITS)


def score_record(r: Result, route: dict[str, Any] | None, regions: bool,
                 routing: bool = False) -> dict[str, Any]:
    """One scores-file record (also the JSONL line), keys in a fixed order.

    Args:
        r: the result.
        route: its routing outcome (text images of a routing run), else None.
        regions: include the 34 region probabilities.
        routing: include the ``dest`` and ``route`` keys (null for images not routed).
    """
    rec: dict[str, Any] = {"path": r.path, "prob": _fmt_prob(r.prob), "is_text": r.is_text,
                           "status": r.status, "detail": r.detail}
    if routing:
        rec["dest"] = route.get("dest") if route else None
        rec["route"] = route.get("status") if route else None
    if regions:
        rec["regions"] = ([round(v, PROB_DIGITS) for v in r.regions]
                          if r.regions is not None else None)
    return rec


class ScoresWriter:
    """Scores as JSONL (``.jsonl``/``.json``) or CSV (``.csv``), chosen by the file extension."""

    def __init__(self, f: IO[str], fmt: str, routing: bool, regions: bool) -> None:
        self.f, self.fmt, self.routing, self.regions = f, fmt, routing, regions
        self.csv = None
        if fmt == "csv":
            self.csv = csv.writer(f, lineterminator="\n")
            header = ["path", "prob", "is_text", "status", "detail"]
            header += ["dest", "route"] if routing else []
            header += REGION_COLUMNS if regions else []
            self.csv.writerow(header)

    def write(self, r: Result, route: dict[str, Any] | None) -> None:
        rec = score_record(r, route, self.regions, self.routing)
        if self.csv is None:
            self.f.write(json.dumps(rec, ensure_ascii=True, separators=(",", ":")) + "\n")
            return
        row = [rec["path"], "" if rec["prob"] is None else repr(rec["prob"]),
               "true" if r.is_text else "false", rec["status"], rec["detail"]]
        if self.routing:
            row += [rec["dest"] or "", rec["route"] or ""]
        if self.regions:
            row += [repr(v) for v in rec["regions"]] if rec["regions"] else [""] * 34
        self.csv.writerow(row)


def scores_format(path: Path) -> str:
    """``jsonl`` or ``csv`` from the extension; anything else is a usage error."""
    ext = Path(path).suffix.lower()
    if ext in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if ext == ".csv":
        return "csv"
    raise TextsieveError(f"--scores {path}: use a .jsonl or .csv file name")


def path_record(path: str, print0: bool) -> bytes | None:
    """The bytes of one ``--out`` record, or None when the name cannot be written as a line."""
    raw = os.fsencode(path)
    if print0:
        return raw + b"\0"
    if b"\n" in raw:
        return None
    return raw + b"\n"


@contextlib.contextmanager
def optional_text_writer(path: Path | None) -> Iterator[IO[str] | None]:
    """Atomic text writer (surrogate-escaped names written back as their raw bytes), or None."""
    if path is None:
        yield None
        return
    with atomic_writer(path, "wb") as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        yield f
        f.flush()
        f.detach()


@dataclass
class MergeCounts:
    """Counts over the whole listing, gathered while merging."""

    by_status: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    ok: int = 0
    text: int = 0
    unlisted: int = 0


def merge_outputs(journal: Journal, n_shards: int, *, out: Path | None,
                  stdout: IO[bytes] | None, scores: Path | None, print0: bool, regions: bool,
                  routing: bool) -> MergeCounts:
    """Write the final outputs from the journal's shards, in listing order, files atomically.

    Args:
        journal: a journal whose shards all have results (and routing outcomes if routing).
        n_shards: number of shards.
        out: text-image paths file; None writes them to ``stdout``.
        stdout: binary stream for the paths when ``out`` is None (default: sys.stdout).
        scores: scores file (``.jsonl`` or ``.csv``), or None.
        print0: NUL-terminated paths instead of lines.
        regions: include region probabilities in the scores.
        routing: include routing outcomes in the scores.

    Returns:
        Counts by status and by routing outcome, text images, names left out of line output.
    """
    status: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    counts = MergeCounts()
    fmt = scores_format(scores) if scores is not None else "jsonl"
    with contextlib.ExitStack() as stack:
        sf = stack.enter_context(optional_text_writer(scores))
        writer = ScoresWriter(sf, fmt, routing, regions) if sf is not None else None
        if out is not None:
            sink: IO[bytes] = stack.enter_context(atomic_writer(Path(out)))
        else:
            sink = stdout if stdout is not None else sys.stdout.buffer
        for k in range(n_shards):
            outcome = ({o["src"]: o for o in read_jsonl(journal.routed_path(k))}
                       if routing else {})
            for r in journal.read_results(k):
                status[r.status] += 1
                route = outcome.get(r.path)
                if route is not None:
                    routes[route["status"]] += 1
                if writer is not None:
                    writer.write(r, route)
                if not r.is_text:
                    continue
                counts.text += 1
                rec = path_record(r.path, print0)
                if rec is None:
                    counts.unlisted += 1
                    log.warning("left out of --out (newline in the name; use --print0 or the "
                                "JSONL scores): %r", r.path)
                else:
                    sink.write(rec)
        sink.flush()
    counts.by_status = dict(sorted(status.items()))
    counts.routes = dict(sorted(routes.items()))
    counts.ok = status.get("ok", 0)
    return counts
