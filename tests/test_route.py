"""Routing: never overwrites, never loses a file, idempotent after a kill at any step."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from textsieve.route import RouteConfig, _tmp_name, execute_plan, plan_routes


def put(p: Path, data: bytes) -> str:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return str(p)


def contents(*folders: Path) -> list[str]:
    """Digests of every regular file under the folders (the data, wherever it lives)."""
    out = []
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                p = os.path.join(dirpath, f)
                if not os.path.islink(p):
                    out.append(hashlib.sha256(Path(p).read_bytes()).hexdigest())
    return sorted(out)


@pytest.fixture
def crawl(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    src = tmp_path / "crawl"
    items = [(put(src / rel, rel.encode() * 10), rel) for rel in ("a.jpg", "sub/b.jpg", "c")]
    return src, items


def test_copy_keeps_layout_and_suffixes_instead_of_overwriting(
        tmp_path: Path, crawl: tuple[Path, list[tuple[str, str]]]) -> None:
    src, items = crawl
    dest = tmp_path / "out"
    put(dest / "a.jpg", b"someone else's file")
    put(dest / "a~1.jpg", b"and another")
    put(dest / "c", b"taken too")
    cfg = RouteConfig("copy", dest)
    plan = plan_routes(items, cfg)
    assert [(Path(s["dest"]).relative_to(dest).as_posix(), s["action"]) for s in plan] == [
        ("a~2.jpg", "copied"), ("sub/b.jpg", "copied"), ("c~1", "copied")]
    out = execute_plan(plan, cfg)
    assert [o["status"] for o in out] == ["copied"] * 3
    assert (dest / "a.jpg").read_bytes() == b"someone else's file"
    assert (dest / "a~2.jpg").read_bytes() == (src / "a.jpg").read_bytes()
    assert (dest / "sub" / "b.jpg").read_bytes() == (src / "sub" / "b.jpg").read_bytes()
    assert (src / "a.jpg").exists()
    # Executing the same plan again (a resumed run) changes nothing and reports the same.
    before = sorted(p.name for p in dest.rglob("*"))
    assert execute_plan(plan, cfg) == out
    assert sorted(p.name for p in dest.rglob("*")) == before
    # A new plan over the same files finds them already there: no duplicate copies.
    assert [s["action"] for s in plan_routes(items, cfg)] == ["exists"] * 3


def test_skip_mode_leaves_conflicts_alone(tmp_path: Path,
                                          crawl: tuple[Path, list[tuple[str, str]]]) -> None:
    src, items = crawl
    dest = tmp_path / "out"
    put(dest / "a.jpg", b"other")
    cfg = RouteConfig("move", dest, on_conflict="skip")
    out = execute_plan(plan_routes(items, cfg), cfg)
    assert [o["status"] for o in out] == ["skipped", "moved", "moved"]
    assert (dest / "a.jpg").read_bytes() == b"other"
    assert (src / "a.jpg").exists() and not (src / "c").exists()


def test_same_relative_path_from_two_roots(tmp_path: Path) -> None:
    a = put(tmp_path / "r1" / "x.jpg", b"one")
    b = put(tmp_path / "r2" / "x.jpg", b"two")
    cfg = RouteConfig("copy", tmp_path / "out")
    out = execute_plan(plan_routes([(a, "x.jpg"), (b, "x.jpg")], cfg), cfg)
    assert [Path(o["dest"]).name for o in out] == ["x.jpg", "x~1.jpg"]
    assert (tmp_path / "out" / "x~1.jpg").read_bytes() == b"two"


def test_move_never_loses_and_resumes_after_a_kill_at_each_step(
        tmp_path: Path, crawl: tuple[Path, list[tuple[str, str]]]) -> None:
    src, items = crawl
    dest = tmp_path / "out"
    put(dest / "a.jpg", b"pre-existing")
    before = contents(src, dest)
    cfg = RouteConfig("move", dest)
    plan = plan_routes(items, cfg)
    # Simulate kills: item 0 fully moved, item 1 linked but source not yet removed, plus a
    # leftover temporary copy of item 2 from an interrupted cross-device copy.
    os.makedirs(Path(plan[0]["dest"]).parent, exist_ok=True)
    os.link(plan[0]["src"], plan[0]["dest"])
    os.unlink(plan[0]["src"])
    os.makedirs(Path(plan[1]["dest"]).parent, exist_ok=True)
    os.link(plan[1]["src"], plan[1]["dest"])
    Path(_tmp_name(plan[2]["dest"])).write_bytes(b"partial")
    out = execute_plan(plan, cfg)
    assert [o["status"] for o in out] == ["moved"] * 3
    assert not any(os.path.exists(s) for s, _ in items)
    assert not os.path.exists(_tmp_name(plan[2]["dest"]))
    assert contents(src, dest) == before  # every byte still exists, exactly once
    assert execute_plan(plan, cfg) == out


def test_conflict_appearing_after_planning_is_not_overwritten(
        tmp_path: Path, crawl: tuple[Path, list[tuple[str, str]]]) -> None:
    src, items = crawl
    dest = tmp_path / "out"
    cfg = RouteConfig("move", dest)
    plan = plan_routes(items[:1], cfg)
    put(Path(plan[0]["dest"]), b"raced in")
    out = execute_plan(plan, cfg)
    assert out[0]["status"] == "conflict"
    assert (dest / "a.jpg").read_bytes() == b"raced in"
    assert (src / "a.jpg").exists()


def test_identical_file_at_destination_is_not_a_link_trap(tmp_path: Path) -> None:
    s = put(tmp_path / "src" / "a.jpg", b"data")
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(s, dest / "a.jpg")  # a link to the source itself must not count as "the same"
    cfg = RouteConfig("move", dest)
    out = execute_plan(plan_routes([(s, "a.jpg")], cfg), cfg)
    assert out[0]["status"] == "moved" and Path(out[0]["dest"]).name == "a~1.jpg"
    assert (dest / "a~1.jpg").read_bytes() == b"data"


def test_link_mode_and_missing_source(tmp_path: Path,
                                      crawl: tuple[Path, list[tuple[str, str]]]) -> None:
    src, items = crawl
    cfg = RouteConfig("link", tmp_path / "out")
    plan = plan_routes(items, cfg)
    out = execute_plan(plan, cfg)
    assert [o["status"] for o in out] == ["linked"] * 3
    assert os.readlink(tmp_path / "out" / "sub" / "b.jpg") == str(src / "sub" / "b.jpg")
    assert execute_plan(plan, cfg) == out
    assert [s["action"] for s in plan_routes(items, cfg)] == ["exists"] * 3
    copy = RouteConfig("copy", tmp_path / "copies")
    plan = plan_routes(items[:1], copy)
    os.unlink(items[0][0])
    assert execute_plan(plan, copy)[0]["status"] == "missing"
