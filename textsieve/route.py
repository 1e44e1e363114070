"""Routing of text images: copy, symlink or move them under a folder, never overwriting, never
losing a file, and idempotent when a killed run is resumed.

Routing of one shard happens in two steps:

1. :func:`plan_routes` picks every destination *before any file is touched*: ``DIR/rel`` (the
   path relative to its input root); if that name is taken by a different file, ``stem~1.ext``,
   ``stem~2.ext``, ... (``on_conflict="suffix"``, the default) or nothing (``"skip"``). A file
   with identical content (for links: a link to the same source) already there is ``exists``:
   nothing is done and, for moves, the source stays where it is. The plan is saved in the
   journal.
2. :func:`execute_plan` carries the plan out. Each step is atomic (copy to a temporary name,
   then ``link`` it into place, which fails rather than overwrite) and idempotent: run again
   after a kill, a finished copy is recognised by its content, a finished move by its source
   being gone and its destination present, a half-finished move (destination linked, source
   still there) is completed. So a resumed run reports exactly what an uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("copy", "link", "move")
CONFLICTS = ("suffix", "skip")
_DONE = {"copy": "copied", "link": "linked", "move": "moved"}


@dataclass(frozen=True)
class RouteConfig:
    """Where and how text images are routed.

    Attributes:
        mode: ``copy``, ``link`` (symbolic link to the absolute source path) or ``move``.
        dest: destination folder.
        on_conflict: ``suffix`` (``name~1.jpg``) or ``skip`` when a different file has the name.
    """

    mode: str
    dest: Path
    on_conflict: str = "suffix"


def _same(src: str, dest: str, mode: str) -> bool:
    """Whether ``dest`` already holds what routing ``src`` would put there."""
    if mode == "link":
        return os.path.islink(dest) and os.readlink(dest) == os.path.abspath(src)
    if os.path.islink(dest) or not os.path.isfile(dest):
        return False  # never treat a link as "the same": deleting its target would lose data
    try:
        return os.path.samefile(src, dest) or filecmp.cmp(src, dest, shallow=False)
    except OSError:
        return False


def _candidate(base: Path, k: int) -> Path:
    if k == 0:
        return base
    name = base.name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension, or a name like ".jpg"
        return base.with_name(f"{name}~{k}")
    return base.with_name(f"{stem}~{k}.{ext}")


def plan_routes(items: list[tuple[str, str]], cfg: RouteConfig) -> list[dict[str, Any]]:
    """Choose a destination and an action for each ``(source path, relative path)``.

    Args:
        items: text images of one shard, in order.
        cfg: routing config.

    Returns:
        One ``{"src", "dest", "action"}`` dict per item; ``action`` is ``copied``/``linked``/
        ``moved`` (to do), ``exists`` (identical content already there) or ``skipped``.
    """
    claimed: set[str] = set()
    plan = []
    for src, rel in items:
        base = Path(cfg.dest) / rel
        k, action, dest = 0, _DONE[cfg.mode], None
        while True:
            cand = str(_candidate(base, k))
            if cand in claimed:
                k += 1
                continue
            if not os.path.lexists(cand):
                dest = cand
                break
            if _same(src, cand, cfg.mode):
                dest, action = cand, "exists"
                break
            if cfg.on_conflict == "skip":
                dest, action = cand, "skipped"
                break
            k += 1
        claimed.add(dest)
        plan.append({"src": src, "dest": dest, "action": action})
    return plan


def _tmp_name(dest: str) -> str:
    d, name = os.path.split(dest)
    return os.path.join(d, f".{name}.textsieve-tmp")  # fixed name: a rerun reuses, not leaks


def _copy_into_place(src: str, dest: str) -> None:
    """Copy ``src`` to a temporary name, then link it to ``dest`` (fails if ``dest`` exists)."""
    tmp = _tmp_name(dest)
    shutil.copy2(src, tmp)
    try:
        os.link(tmp, dest)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise
        # File systems without hard links: rename, after checking the name is still free.
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "destination exists", dest) from None
        os.replace(tmp, dest)
        return
    os.unlink(tmp)


def _do(step: dict[str, Any], mode: str) -> tuple[str, str]:
    """Carry out one planned step idempotently. Returns (status, detail)."""
    src, dest, action = step["src"], step["dest"], step["action"]
    if action in ("exists", "skipped"):
        return action, ""
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    if mode == "link":
        if _same(src, dest, "link"):
            return action, ""  # done before a kill
        os.symlink(os.path.abspath(src), dest)  # FileExistsError if taken meanwhile
        return action, ""
    src_there = os.path.lexists(src)
    if os.path.lexists(dest):
        if mode == "move" and not src_there:
            return action, ""  # moved before a kill
        if not src_there or not _same(src, dest, mode):
            return "conflict", "destination appeared after planning; source left in place"
        if mode == "move":
            os.unlink(src)  # linked/copied before a kill, source not yet removed
        return action, ""
    if not src_there:
        return "missing", "source vanished before routing"
    if mode == "copy":
        _copy_into_place(src, dest)
        return action, ""
    try:
        # Same file system: atomic and never overwrites. A listed symlink is resolved, so the
        # moved file is the data, not a link that may dangle in its new folder.
        os.link(src, dest)
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise
        _copy_into_place(src, dest)  # another file system (EXDEV) or no hard links
    os.unlink(src)
    return action, ""


def execute_plan(plan: list[dict[str, Any]], cfg: RouteConfig) -> list[dict[str, Any]]:
    """Carry out a plan from :func:`plan_routes`; safe to call again on the same plan.

    Returns:
        One ``{"src", "dest", "status", "detail"}`` per step. ``status`` is the planned action
        when it is done (``copied``, ``linked``, ``moved``, ``exists``, ``skipped``), else
        ``conflict``, ``missing`` or ``error``; failures leave the source untouched.
    """
    out = []
    for step in plan:
        try:
            status, detail = _do(step, cfg.mode)
            if cfg.mode != "link" and step["dest"] is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_tmp_name(step["dest"]))  # left by a copy killed half-way
        except FileExistsError:
            status, detail = "conflict", "destination appeared after planning; source left"
        except OSError as e:
            status, detail = "error", f"{e.strerror or e}"
            log.warning("cannot route %s -> %s: %s", step["src"], step["dest"], detail)
        out.append({"src": step["src"], "dest": step["dest"], "status": status,
                    "detail": detail})
    return out
