"""Ray Data entry point: :class:`TextScorer`, a callable class for ``Dataset.map_batches``.

For people who build their own Ray pipelines (and for ``textsieve filter --engine ray``)::

    import ray
    from textsieve.ray import TextScorer

    ds = ray.data.read_binary_files("s3://bucket/crawl/", include_paths=True)
    ds = ds.map_batches(TextScorer, fn_constructor_kwargs={"threshold": 0.5},
                        compute=ray.data.ActorPoolStrategy(size=4), num_cpus=1, batch_size=64)
    ds.drop_columns(["bytes"]).write_parquet("s3://bucket/scores/")

Ray builds one ``TextScorer`` per actor, so the model is loaded once per actor. Each call scores
one batch with the filter's own code (:class:`textsieve.score.Scorer`: same decode, resize,
network and decision), so a row gets the same probability as in ``textsieve filter`` when it is
scored in the same batch sequence (see ``docs/ray.md``).

Input columns (a ``dict[str, np.ndarray]`` batch, Ray's default batch format):

``path``
    Image paths, read on the worker; or only a label when ``bytes`` is present.
``bytes``
    The file contents (``ray.data.read_binary_files``); decoded instead of reading ``path``.
``status`` (optional)
    Rows whose status is already set to something other than ``ok``/``success`` (e.g. a file
    that a listing step refused, a failed download) are passed through unread, with their
    ``detail`` when the batch has that column. Empty, ``ok`` and ``success`` (img2dataset's
    word for a downloaded image) are scored.

Output: the input columns plus ``prob`` (float or None), ``is_text`` (bool), ``status``
(``ok`` or an error kind), ``detail`` (str) and, with ``regions=True``, ``regions`` (a list of 34
floats, 3x3 row-major then 5x5, or None). Object columns of floats/lists with None become plain
nullable Parquet columns (``double``, ``list<double>``), readable without Ray.

This module does not need Ray itself (a ``TextScorer`` is a plain callable); :func:`require_ray`
gives the clear error when the ``ray`` extra is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from textsieve.checkpoint import default_weights, load_model, threshold_of
from textsieve.errors import ConfigError, MissingExtraError
from textsieve.score import Result, ScoreConfig, Scorer
from textsieve.walk import Entry

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'textsieve[ray]'"
RESULT_COLUMNS = ("prob", "is_text", "status", "detail")
_TO_SCORE = ("", "ok", "success")  # upstream statuses that mean "this row has an image"


def require_ray() -> ModuleType:
    """Import Ray Data, or explain how to install it.

    Returns:
        The ``ray`` module, with ``ray.data`` imported.

    Raises:
        MissingExtraError: Ray (with its ``data`` extra) is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data] pulls pyarrow/pandas; plain ray lacks them)
    except ImportError as e:
        raise MissingExtraError(
            f"the Ray engine needs Ray Data ({e.name or e} is not installed): {INSTALL_HINT}"
        ) from None
    return ray


def results_to_columns(results: Sequence[Result], regions: bool) -> dict[str, np.ndarray]:
    """Column arrays of :class:`Result` rows (the output columns of :class:`TextScorer`).

    ``prob`` and ``regions`` are object arrays holding None for unscored rows, so that Ray
    writes them as nullable Parquet columns instead of NaN-filled tensors.

    Args:
        results: one result per row.
        regions: include the ``regions`` column.

    Returns:
        ``prob``, ``is_text``, ``status``, ``detail`` (and ``regions``), each of length
        ``len(results)``.
    """
    n = len(results)
    prob = np.empty(n, dtype=object)
    prob[:] = [r.prob for r in results]
    cols = {
        "prob": prob,
        "is_text": np.array([r.is_text for r in results], dtype=bool),
        "status": np.array([r.status for r in results], dtype=object),
        "detail": np.array([r.detail for r in results], dtype=object),
    }
    if regions:
        reg = np.empty(n, dtype=object)  # filled one by one: a list value must stay one cell
        for i, r in enumerate(results):
            reg[i] = list(r.regions) if r.regions is not None else None
        cols["regions"] = reg
    return cols


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return "" if value is None else str(value)


class TextScorer:
    """Scores a batch of images; built once per Ray actor (the model loads once).

    Args:
        weights: checkpoint path; None means the shipped student weights.
        threshold: decision threshold; None means the one stored with the weights.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads for this actor; None keeps torch's setting (Ray sets
            ``OMP_NUM_THREADS`` to the actor's ``num_cpus``).
        regions: add the ``regions`` column (34 region probabilities per row).
        options: decoding and batching settings (max pixels, max bytes, truncated files,
            network size, images per forward pass); its ``threshold``, ``device`` and
            ``regions`` are replaced by the arguments above.

    Raises:
        CheckpointError: the weights cannot be loaded.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        threshold: float | None = None,
        device: str = "cpu",
        threads: int | None = None,
        regions: bool = True,
        options: ScoreConfig | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        path = Path(weights) if weights is not None else default_weights()
        model, meta = load_model(path, device)
        th = float(threshold) if threshold is not None else threshold_of(meta)
        self.config = replace(options or ScoreConfig(), threshold=th, device=device,
                              regions=regions)
        self.scorer = Scorer(model, self.config)
        log.debug("TextScorer ready: %s, threshold %.4f, %s", path, th, device)

    def score_batch(
        self,
        paths: Sequence[str],
        data: Sequence[bytes | None] | None = None,
        statuses: Sequence[str] | None = None,
        details: Sequence[str] | None = None,
    ) -> list[Result]:
        """Score one batch: read ``paths`` (or decode ``data``), in order.

        Args:
            paths: one path (or label) per row.
            data: file contents per row; when given, they are decoded instead of ``paths``.
            statuses: rows with a status other than ``""``, ``ok`` or ``success`` are not read
                and keep it.
            details: their detail text.

        Returns:
            One :class:`Result` per row.
        """
        n = len(paths)
        pre: list[str | None] = [None] * n
        if statuses:
            pre = [None if s in _TO_SCORE else s for s in statuses]
        why = [d if s else "" for s, d in zip(pre, details, strict=True)] if details else [""] * n
        if data is not None:
            for i, b in enumerate(data):
                if pre[i] is not None:
                    continue
                if b is None:
                    pre[i], why[i] = "missing", "no bytes for this row"
                elif len(b) > self.config.max_bytes:  # what read_file refuses on disk
                    pre[i] = "too_large"
                    why[i] = f"{len(b)} bytes exceeds max_bytes={self.config.max_bytes}"
        entries = [Entry(p, "", s) for p, s in zip(paths, pre, strict=True)]
        blobs = None if data is None else [b if b is not None else b"" for b in data]
        results = self.scorer.score(entries, data=blobs)  # rows with a status are not read
        return [replace(r, detail=d) if d else r for r, d in zip(results, why, strict=True)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score a Ray Data batch; returns the input columns plus the result columns.

        Args:
            batch: columns as numpy arrays, with ``path`` and/or ``bytes`` (see module doc).

        Returns:
            A new dict: the input columns, then ``prob``, ``is_text``, ``status``, ``detail``
            (and ``regions``). Input arrays are not modified (they may be read-only views).

        Raises:
            ConfigError: the batch has neither a ``path`` nor a ``bytes`` column.
        """
        if "path" not in batch and "bytes" not in batch:
            raise ConfigError(
                f"TextScorer needs a 'path' or 'bytes' column; got {sorted(batch)}"
            )
        n = len(next(iter(batch.values())))
        paths = [_as_str(p) for p in batch["path"]] if "path" in batch else [""] * n
        data = None
        if "bytes" in batch:
            data = [bytes(b) if b is not None else None for b in batch["bytes"]]
        statuses = [_as_str(s) for s in batch["status"]] if "status" in batch else None
        details = [_as_str(d) for d in batch["detail"]] if "detail" in batch else None
        results = self.score_batch(paths, data, statuses, details)
        out = {k: v for k, v in batch.items() if k not in (*RESULT_COLUMNS, "regions")}
        out.update(results_to_columns(results, self.config.regions))
        return out


__all__ = ["INSTALL_HINT", "TextScorer", "require_ray", "results_to_columns"]
