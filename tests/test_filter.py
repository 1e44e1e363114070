"""The filter end to end: bad inputs as counted statuses, odd names, exit codes, determinism
across worker counts, workers/threads honoured, and resume after a real SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from badinputs import non_utf8_name, write_bad_inputs
from conftest import draw_scene
from typer.testing import CliRunner

import textsieve.filter as filter_mod
from textsieve.checkpoint import load_model, save_checkpoint
from textsieve.cli import app
from textsieve.decode import decode_image
from textsieve.models import StudentNet
from textsieve.preprocess import prepare
from textsieve.score import ScoreConfig, Scorer, score_paths

runner = CliRunner()


def filter_cli(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, ["filter", *args])
    return r.exit_code, r.output


def make_crawl(root: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        sub = root / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"img{i:03d}.{'png' if i % 5 == 0 else 'jpg'}"
        draw_scene((48 + i % 7, 40), i, [(5, 10, 40, 20)] if i % 2 else []).save(p)
        paths.append(p)
    return paths


def spread_weights(path: Path, images: list[Path]) -> Path:
    """A random student whose image probabilities spread around 0.5 on ``images``, so that
    threshold 0.5 gives a mix of text and non-text decisions."""
    torch.manual_seed(0)
    model = StudentNet().eval()
    with torch.no_grad():
        model.head.classifier.weight.mul_(300)
        probs = np.array([r.prob for r in score_paths(model, [str(p) for p in images])])
        model.head.classifier.bias.sub_(float(np.median(np.log(probs / (1 - probs)))))
    save_checkpoint(path, model, stage="test", thresholds={"default": 0.5})
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def test_scores_match_the_reference_pipeline(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = StudentNet()
    for m in model.modules():  # non-trivial BatchNorm statistics, so that folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    paths = []
    for i, size in enumerate([(700, 520), (300, 300), (90, 400), (2, 300), (640, 480)]):
        p = tmp_path / f"{i}.jpg"
        draw_scene(size, i, [(0, 0, size[0] // 2, size[1] // 3)]).save(p, quality=90)
        paths.append(str(p))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    paths.insert(2, str(tmp_path / "bad.jpg"))
    results = score_paths(model, paths, ScoreConfig(threshold=0.5, batch_size=4))
    assert [r.path for r in results] == paths
    assert results[2].status == "not_image" and results[2].prob is None
    with torch.inference_mode():
        for r in results:
            if r.status != "ok":
                continue
            x = prepare(decode_image(r.path, min_short=256))[None]
            ref = torch.sigmoid(model(x).logits[0])
            np.testing.assert_allclose(r.regions, ref.numpy(), atol=2e-5)
            assert r.prob == pytest.approx(float(ref.max()), abs=2e-5)
            assert r.is_text == (r.prob >= 0.5)


def test_every_bad_input_is_a_counted_status(tmp_path: Path, student_weights: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    crawl = tmp_path / "crawl"
    expected = write_bad_inputs(crawl)
    non_utf8 = non_utf8_name(crawl)
    expected[non_utf8.name] = "ok"
    draw_scene((40, 30), 7).save(crawl / "new\nline.jpg", "JPEG")
    expected["new\nline.jpg"] = "ok"
    draw_scene((40, 30), 8).save(crawl / "deleted.jpg", "JPEG")
    expected["deleted.jpg"] = "missing"
    os.symlink(crawl / "nowhere.jpg", crawl / "broken.jpg")
    os.symlink(crawl / "loop2.jpg", crawl / "loop1.jpg")
    os.symlink(crawl / "loop1.jpg", crawl / "loop2.jpg")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "outside.jpg", crawl / "escape.jpg")
    os.mkfifo(crawl / "fifo.jpg")
    expected.update({"broken.jpg": "broken_link", "loop1.jpg": "symlink_loop",
                     "loop2.jpg": "symlink_loop", "escape.jpg": "symlink_escapes",
                     "fifo.jpg": "not_a_file", "dir.jpg": None})
    del expected["dir.jpg"]  # an (empty) directory named like an image is walked, not read

    real_list = filter_mod.list_inputs

    def list_then_delete(*a: object, **kw: object) -> list:
        entries = real_list(*a, **kw)  # type: ignore[arg-type]
        (crawl / "deleted.jpg").unlink()  # deleted between listing and reading
        return entries

    monkeypatch.setattr(filter_mod, "list_inputs", list_then_delete)
    code, out = filter_cli(str(crawl), "--out", str(tmp_path / "t.txt"), "--scores",
                           str(tmp_path / "s.jsonl"), "--regions", "--weights",
                           str(student_weights), "--workers", "0", "--threshold", "0",
                           "--stats", str(tmp_path / "stats.json"), "--shard-size", "5")
    assert code == 0, out
    rows = jsonl(tmp_path / "s.jsonl")
    got = {os.path.basename(r["path"]): r["status"] for r in rows}
    assert got == expected
    assert all(len(r["regions"]) == 34 for r in rows if r["status"] == "ok")
    assert all(r["detail"] for r in rows if r["status"] != "ok")
    stats = json.loads((tmp_path / "stats.json").read_text())
    n_ok = sum(1 for s in expected.values() if s == "ok")
    assert stats["by_status"]["ok"] == n_ok and stats["by_status"]["too_large"] == 1
    assert sum(stats["by_status"].values()) == len(expected)
    # Threshold 0: every decoded image is text; the newline name cannot be a line of --out.
    lines = (tmp_path / "t.txt").read_bytes().split(b"\n")[:-1]
    assert len(lines) == n_ok - 1 and stats["unlisted"] == 1
    assert os.fsencode(non_utf8) in lines  # raw bytes of the non-UTF-8 name
    assert not (tmp_path / "t.txt.journal").exists()


def test_print0_and_jsonl_round_trip_odd_names(tmp_path: Path, student_weights: Path) -> None:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    odd = [crawl / "new\nline.jpg", non_utf8_name(crawl), crawl / "tab\tand space.jpg"]
    for p in odd:
        if not p.exists():
            draw_scene((40, 30), 1).save(p, "JPEG")
    code, out = filter_cli(str(crawl), "--out", str(tmp_path / "t0"), "--print0", "--scores",
                           str(tmp_path / "s.jsonl"), "--weights", str(student_weights),
                           "--workers", "0", "--threshold", "0", "-q")
    assert code == 0, out
    names = (tmp_path / "t0").read_bytes().split(b"\0")
    assert names[-1] == b"" and sorted(names[:-1]) == sorted(os.fsencode(p) for p in odd)
    from_jsonl = [os.fsencode(r["path"]) for r in jsonl(tmp_path / "s.jsonl")]
    assert sorted(from_jsonl) == sorted(os.fsencode(p) for p in odd)
    assert all(os.path.exists(p) for p in from_jsonl)


def test_exit_codes_and_usage_errors(tmp_path: Path, student_weights: Path) -> None:
    bad = tmp_path / "bad"
    write_bad_inputs(bad)
    for name in ("one.png", "thin.png", "cmyk.jpg", "gray16.png", "palette_alpha.png",
                 "anim.gif", "still.webp", "anim.webp", "gray.jpg", "rotated.jpg"):
        (bad / name).unlink()
    w = ["--weights", str(student_weights), "--workers", "0", "-q"]
    code, out = filter_cli(str(bad), "--out", str(tmp_path / "a.txt"), *w)
    assert code == 1 and "nothing could be processed" in out
    (tmp_path / "empty").mkdir()
    assert filter_cli(str(tmp_path / "empty"), "--out", str(tmp_path / "b.txt"), *w)[0] == 1
    usage = [
        [str(bad), "--copy-to", "x", "--move-to", "y"],
        [str(bad), "--scores", str(tmp_path / "s.txt")],
        [str(tmp_path / "missing")],
        [str(bad), "--weights", str(tmp_path / "nope.pt")],
        [str(bad), "--threshold", "1.5"],
        [],
    ]
    for args in usage:
        code, out = filter_cli(*args, "--out", str(tmp_path / "c.txt"), "--workers", "0")
        assert code == 2, (args, out)
        assert "Traceback" not in out


def test_journal_is_not_mixed_between_runs(tmp_path: Path, student_weights: Path) -> None:
    crawl = tmp_path / "crawl"
    make_crawl(crawl, 6)
    base = [str(crawl), "--out", str(tmp_path / "t.txt"), "--weights", str(student_weights),
            "--workers", "0", "-q", "--shard-size", "2"]
    assert filter_cli(*base, "--keep-journal")[0] == 0
    first = (tmp_path / "t.txt").read_bytes()
    code, out = filter_cli(*base)
    assert code == 2 and "--resume" in out
    code, out = filter_cli(*base, "--resume", "--threshold", "0.9")
    assert code == 2 and "threshold" in out
    code, out = filter_cli(*base, "--resume", "--stats", str(tmp_path / "st.json"))
    assert code == 0, out
    stats = json.loads((tmp_path / "st.json").read_text())
    assert stats["resumed"] == 6 and stats["processed"] == 0
    assert (tmp_path / "t.txt").read_bytes() == first
    assert filter_cli(*base, "--overwrite", "--threshold", "0.9")[0] == 0


def test_same_bytes_for_any_worker_count_and_threads_honoured(tmp_path: Path) -> None:
    crawl = tmp_path / "crawl"
    images = make_crawl(crawl, 12)
    weights = spread_weights(tmp_path / "w.pt", images)
    outs = {}
    for workers, threads in ((0, 1), (2, 1), (0, 2)):
        tag = f"{workers}-{threads}"
        code, out = filter_cli(str(crawl), "--out", str(tmp_path / f"{tag}.txt"), "--scores",
                               str(tmp_path / f"{tag}.csv"), "--regions", "--weights",
                               str(weights), "--workers", str(workers), "--threads",
                               str(threads), "--shard-size", "3", "--batch-size", "2",
                               "--stats", str(tmp_path / f"{tag}.json"), "-q")
        assert code == 0, out
        stats = json.loads((tmp_path / f"{tag}.json").read_text())
        assert stats["workers"] == workers and stats["threads"] == threads
        # Each worker that scored a shard reports its torch thread count. A pool need not hand
        # a shard to every worker (one may take them all on a loaded machine), so count <= workers.
        reported = list(stats["worker_threads"].values())
        assert reported and set(reported) == {threads} and len(reported) <= max(workers, 1)
        if workers:
            assert str(os.getpid()) not in stats["worker_threads"]
        outs[tag] = ((tmp_path / f"{tag}.txt").read_bytes(),
                     (tmp_path / f"{tag}.csv").read_bytes())
    assert outs["0-1"] == outs["2-1"]
    assert outs["0-1"][0] == outs["0-2"][0]
    text = outs["0-1"][0].split(b"\n")[:-1]
    assert 0 < len(text) < len(images)
    assert text == sorted(text)


def _wait_for_shard(journal: Path, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(p.name.endswith(".routed.jsonl") for p in journal.glob("shard-*")):
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read()[-2000:]}")
        time.sleep(0.005)
    pytest.fail("no shard finished in time")


def test_resume_after_sigkill_gives_identical_outputs(tmp_path: Path) -> None:
    images = make_crawl(tmp_path / "a" / "crawl", 48)
    (tmp_path / "a" / "crawl" / "d1" / "junk.jpg").write_bytes(b"<html>")
    weights = spread_weights(tmp_path / "w.pt", images)
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    args = ["filter", "crawl", "--out", "t.txt", "--scores", "s.jsonl", "--regions",
            "--move-to", "routed", "--weights", str(weights), "--threads", "1",
            "--shard-size", "2", "--batch-size", "2", "-q"]
    # Reference: uninterrupted, in-process, in folder a/.
    cwd = os.getcwd()
    os.chdir(tmp_path / "a")
    try:
        r = runner.invoke(app, [*args, "--workers", "0"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.output
    # Real kill: the run in its own process group, SIGKILLed after its first routed shard.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "textsieve", *args, "--workers", "0"],
                            cwd=tmp_path / "b", start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_shard(tmp_path / "b" / "t.txt.journal", proc, timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "b" / "t.txt").exists(), "killed too late to test a resume"
    os.chdir(tmp_path / "b")
    try:
        r = runner.invoke(app, [*args, "--workers", "0", "--resume"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0, r.output
    for name in ("t.txt", "s.jsonl"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()

    def tree(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    for sub in ("routed", "crawl"):
        assert tree(tmp_path / "b" / sub) == tree(tmp_path / "a" / sub)
    moved = tree(tmp_path / "a" / "routed")
    assert 0 < len(moved) < len(images)
    routes = {row["route"] for row in jsonl(tmp_path / "b" / "s.jsonl") if row["is_text"]}
    assert routes == {"moved"}  # not "exists"/"missing" for the files moved before the kill
    assert not (tmp_path / "b" / "t.txt.journal").exists()


def test_progress_and_library_api(tmp_path: Path, student_weights: Path) -> None:
    images = make_crawl(tmp_path / "crawl", 9)
    seen: list[filter_mod.FilterProgress] = []
    stats = filter_mod.run_filter(
        filter_mod.FilterConfig(roots=(tmp_path / "crawl",), out=tmp_path / "t.txt",
                                weights=student_weights, workers=0, shard_size=4),
        on_progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 10))
    assert seen[-1].total == 9 and stats.ok == 9 and stats.total == 9
    model, _ = load_model(student_weights)
    scorer = Scorer(model, ScoreConfig(regions=False))
    res = score_paths(scorer, [str(p) for p in images[:3]])
    assert [r.regions for r in res] == [None] * 3 and all(r.status == "ok" for r in res)


def test_from_list_on_stdin_and_paths_on_stdout(tmp_path: Path, student_weights: Path) -> None:
    images = make_crawl(tmp_path / "crawl", 4)
    listing = "".join(f"{p}\n" for p in reversed(images)) + f"{tmp_path / 'gone.jpg'}\n"
    r = runner.invoke(app, ["filter", "--from-list", "-", "--weights", str(student_weights),
                            "--workers", "0", "--threshold", "0", "-q", "--journal",
                            str(tmp_path / "j")], input=listing)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == sorted(str(p) for p in images)  # sorted, missing left out
