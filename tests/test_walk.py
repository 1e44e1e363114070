"""Input listing: order, recursion, hidden files, symlink policy, loops, lists, odd names."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from textsieve.walk import Entry, InputError, list_inputs, read_path_list


def touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def listed(entries: list[Entry], root: Path) -> dict[str, str | None]:
    return {os.path.relpath(e.path, root): e.status for e in entries}


def test_sorted_recursive_and_hidden(tmp_path: Path) -> None:
    for rel in ("b.jpg", "a/z.png", "a/b/c.gif", "A.jpg", ".hidden.jpg", ".cache/x.jpg",
                "dir.jpg/inner.jpg"):
        touch(tmp_path / rel)
    entries = list_inputs([tmp_path])
    rels = [os.path.relpath(e.path, tmp_path) for e in entries]
    # byte order: 'A' < 'a' < 'b' < 'd'; the directory named dir.jpg is walked, not read
    assert rels == ["A.jpg", "a/b/c.gif", "a/z.png", "b.jpg", "dir.jpg/inner.jpg"]
    assert all(e.status is None for e in entries)
    assert entries[1].rel == "a/b/c.gif"
    with_hidden = [os.path.relpath(e.path, tmp_path) for e in list_inputs([tmp_path],
                                                                          hidden=True)]
    assert ".cache/x.jpg" in with_hidden and ".hidden.jpg" in with_hidden


def test_symlinks_do_not_escape_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(root / "real.jpg")
    touch(outside / "secret.jpg")
    touch(outside / "deep" / "more.jpg")
    os.symlink(outside / "secret.jpg", root / "escape.jpg")
    os.symlink(outside, root / "escape_dir")
    os.symlink(root / "real.jpg", root / "inner_link.jpg")
    os.symlink(root / "nowhere.jpg", root / "broken.jpg")
    got = listed(list_inputs([root]), root)
    assert got == {"broken.jpg": None, "escape.jpg": "symlink_escapes",
                   "inner_link.jpg": None, "real.jpg": None}
    followed = listed(list_inputs([root], follow_symlinks=True), root)
    assert followed["escape.jpg"] is None
    assert followed["escape_dir/secret.jpg"] is None
    assert followed["escape_dir/deep/more.jpg"] is None


def test_directory_symlink_loop_terminates(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root / "a" / "img.jpg")
    os.symlink(root, root / "a" / "up")  # a/up -> root: an infinite tree if followed naively
    os.symlink(root / "a", root / "a" / "self")
    entries: list[Entry] = []
    t = threading.Thread(
        target=lambda: entries.extend(list_inputs([root], follow_symlinks=True)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "walk did not terminate"
    got = listed(entries, root)
    assert got["a/img.jpg"] is None
    assert got["a/self"] == "symlink_loop"
    assert got["a/up"] == "symlink_loop"
    assert len(got) == 3
    assert listed(list_inputs([root]), root) == {"a/img.jpg": None}  # default: not descended


def test_special_files_broken_links_and_odd_names(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    touch(tmp_path / "new\nline.jpg")
    got = listed(list_inputs([tmp_path]), tmp_path)
    assert got["pipe.jpg"] == "not_a_file"
    assert got["new\nline.jpg"] is None
    assert got[os.fsdecode(b"caf\xe9.jpg")] is None
    assert os.fsdecode(b"caf\xe9.jpg") in got


def test_single_files_lists_and_excludes(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "d" / "a.jpg"), touch(tmp_path / "d" / "b.jpg")
    out = touch(tmp_path / "d" / "out.txt")
    entries = list_inputs([tmp_path / "d"], exclude=[out])
    assert [e.path for e in entries] == [str(a), str(b)]
    single = list_inputs([b, a, b])  # duplicates dropped, sorted
    assert [(e.path, e.rel) for e in single] == [(str(a), "a.jpg"), (str(b), "b.jpg")]
    lst = list_inputs([], from_list=["x/y.jpg", "/abs/z.jpg", "../up.jpg"])
    assert [(e.path, e.rel) for e in lst] == [("../up.jpg", "up.jpg"), ("/abs/z.jpg",
                                               "abs/z.jpg"), ("x/y.jpg", "x/y.jpg")]
    with pytest.raises(InputError, match="no such file"):
        list_inputs([tmp_path / "missing"])


def test_read_path_list_lines_nul_and_stdin(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "list.txt"
    p.write_bytes(b"a.jpg\r\nb c.jpg\n\n  \ncaf\xe9.jpg\n")
    assert read_path_list(p) == ["a.jpg", "b c.jpg", os.fsdecode(b"caf\xe9.jpg")]
    p.write_bytes(b"new\nline.jpg\0b.jpg\0")
    assert read_path_list(p) == ["new\nline.jpg", "b.jpg"]

    class FakeStdin:
        buffer = io.BytesIO(b"s1.jpg\ns2.jpg\n")

    monkeypatch.setattr("sys.stdin", FakeStdin())
    assert read_path_list("-") == ["s1.jpg", "s2.jpg"]
    with pytest.raises(InputError):
        read_path_list(tmp_path / "nope.txt")
