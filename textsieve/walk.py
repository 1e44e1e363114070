"""Input listing for the filter: folders (recursive), single files and path lists, sorted.

Every path that the walk finds becomes one :class:`Entry`; paths that must not be read get a
status at listing time (``status`` is then set and the entry is never decoded), so each of them
still shows up once in the scores and the counts.

Symlink policy (``follow_symlinks=False``, the default):

- a symlinked *file* is listed when its target lies inside one of the given roots; a link that
  points outside every root is listed with status ``symlink_escapes`` and never read;
- a symlinked *directory* is never descended (its files are either inside a root already, or
  outside all of them);
- broken links and link loops are listed and get ``broken_link`` / ``symlink_loop`` when read.

With ``follow_symlinks=True`` links are followed anywhere; a directory that is its own ancestor
(a loop through links) is listed once with status ``symlink_loop`` and not descended again.

Hidden names (starting with ``.``) are skipped unless ``hidden=True``. FIFOs, sockets and
devices met during a walk are listed as ``not_a_file`` and never opened (opening a FIFO blocks).
Order: all entries sorted by the bytes of their path (``os.fsencode``), so the order does not
depend on the locale; duplicates are dropped.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from textsieve.errors import TextsieveError

log = logging.getLogger(__name__)


class InputError(TextsieveError):
    """An input root or path list does not exist or cannot be read (a usage error)."""


@dataclass(frozen=True)
class Entry:
    """One listed input.

    Attributes:
        path: the path as found (root as given by the user, joined with the relative part).
        rel: the path relative to its root (used to keep the layout when routing).
        status: a status given at listing time (the entry is not read), or None.
    """

    path: str
    rel: str
    status: str | None = None


def sort_key(path: str) -> bytes:
    """Locale-independent order: the raw bytes of the path."""
    return os.fsencode(path)


def _inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _walk_dir(
    top: str,
    root: str,
    real_roots: tuple[str, ...],
    *,
    follow_symlinks: bool,
    hidden: bool,
    exclude: frozenset[str],
    ancestors: tuple[tuple[int, int], ...],
) -> Iterator[Entry]:
    try:
        with os.scandir(top) as it:
            children = sorted(it, key=lambda e: sort_key(e.name))
    except OSError as e:
        # A subfolder we cannot list is reported as one entry, not a crash.
        log.warning("cannot list %s: %s", top, e.strerror or e)
        yield Entry(top, os.path.relpath(top, root), "unreadable")
        return
    for child in children:
        if not hidden and child.name.startswith("."):
            continue
        path = child.path
        rel = os.path.relpath(path, root)
        if os.path.abspath(path) in exclude:
            continue
        try:
            is_link = child.is_symlink()
            lst = child.stat(follow_symlinks=False)
        except OSError:  # vanished since the listing of its folder: let the reader say so
            yield Entry(path, rel)
            continue
        if is_link:
            yield from _walk_link(path, rel, root, real_roots, follow_symlinks=follow_symlinks,
                                  hidden=hidden, exclude=exclude, ancestors=ancestors)
        elif stat.S_ISDIR(lst.st_mode):
            yield from _walk_dir(path, root, real_roots, follow_symlinks=follow_symlinks,
                                 hidden=hidden, exclude=exclude,
                                 ancestors=(*ancestors, (lst.st_dev, lst.st_ino)))
        elif stat.S_ISREG(lst.st_mode):
            yield Entry(path, rel)
        else:
            yield Entry(path, rel, "not_a_file")


def _walk_link(
    path: str,
    rel: str,
    root: str,
    real_roots: tuple[str, ...],
    *,
    follow_symlinks: bool,
    hidden: bool,
    exclude: frozenset[str],
    ancestors: tuple[tuple[int, int], ...],
) -> Iterator[Entry]:
    try:
        st = os.stat(path)
    except OSError:
        yield Entry(path, rel)  # broken link or loop: the reader gives the precise status
        return
    if not follow_symlinks:
        if stat.S_ISDIR(st.st_mode):
            return
        if not _inside(os.path.realpath(path), real_roots):
            yield Entry(path, rel, "symlink_escapes")
            return
        yield Entry(path, rel, None if stat.S_ISREG(st.st_mode) else "not_a_file")
        return
    if stat.S_ISDIR(st.st_mode):
        if (st.st_dev, st.st_ino) in ancestors:
            yield Entry(path, rel, "symlink_loop")
            return
        yield from _walk_dir(path, root, real_roots, follow_symlinks=True, hidden=hidden,
                             exclude=exclude, ancestors=(*ancestors, (st.st_dev, st.st_ino)))
    else:
        yield Entry(path, rel, None if stat.S_ISREG(st.st_mode) else "not_a_file")


def _list_rel(path: str) -> str:
    """Routing layout of a listed path: relative paths as they are, absolute ones without '/'."""
    parts = [p for p in os.path.normpath(path).split(os.sep) if p not in ("", ".", "..")]
    return os.path.join(*parts) if parts else os.path.basename(path) or "unnamed"


def read_path_list(source: str | Path) -> list[str]:
    """Paths from a list file (one per line, or NUL-separated if it contains NUL), ``-`` = stdin.

    Raises:
        InputError: the list cannot be read.
    """
    try:
        if str(source) == "-":
            data = sys.stdin.buffer.read()
        else:
            data = Path(source).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read path list {source}: {e.strerror or e}") from None
    sep = b"\0" if b"\0" in data else b"\n"
    items = data.split(sep)
    if sep == b"\n":
        items = [i[:-1] if i.endswith(b"\r") else i for i in items]
    return [os.fsdecode(i) for i in items if i.strip()]


def list_inputs(
    roots: Iterable[str | Path],
    *,
    from_list: Iterable[str] = (),
    follow_symlinks: bool = False,
    hidden: bool = False,
    exclude: Iterable[str | Path] = (),
) -> list[Entry]:
    """List every input path, sorted and without duplicates.

    Args:
        roots: folders (walked recursively) and single files, as given by the user.
        from_list: extra file paths (one per list line); they are not stat'ed here, so a list
            of millions costs no system calls; the reader gives each its status.
        follow_symlinks: follow links out of the roots (see the module docstring).
        hidden: include names starting with ``.``.
        exclude: absolute paths never to list (the run's own outputs and journal).

    Returns:
        Entries sorted by path bytes.

    Raises:
        InputError: a root does not exist at all.
    """
    roots = [os.fspath(r) for r in roots]
    excluded = frozenset(os.path.abspath(os.fspath(p)) for p in exclude)
    real_roots = tuple(os.path.realpath(r) for r in roots if os.path.isdir(r))
    entries: dict[str, Entry] = {}
    for root in roots:
        if not os.path.lexists(root):
            raise InputError(f"no such file or directory: {root}")
        if os.path.isdir(root):
            st = os.stat(root)
            found = _walk_dir(root, root, real_roots, follow_symlinks=follow_symlinks,
                              hidden=hidden, exclude=excluded,
                              ancestors=((st.st_dev, st.st_ino),))
        else:  # a single file (or a broken link / loop given by name): read it as it is
            found = iter([Entry(root, os.path.basename(root.rstrip(os.sep)) or root)])
        for e in found:
            entries.setdefault(e.path, e)
    for p in from_list:
        entries.setdefault(p, Entry(p, _list_rel(p)))
    return sorted(entries.values(), key=lambda e: sort_key(e.path))
