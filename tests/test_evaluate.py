"""``evaluate`` end to end on the synthetic root, the report files, and ``textsieve eval``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from textsieve.checkpoint import default_weights, save_checkpoint
from textsieve.cli import app
from textsieve.errors import AnnotationError, CheckpointError, TextsieveError
from textsieve.evaluate import EvalConfig, evaluate
from textsieve.metrics import jsonable
from textsieve.models import StudentNet
from textsieve.report import result_tables, write_report

runner = CliRunner()


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """``evaluate`` sets torch's global thread count; give the rest of the session its own."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_evaluate_student_end_to_end(textdis_root: Path, student_weights: Path) -> None:
    ticks: list[int] = []
    res = evaluate(EvalConfig(data=textdis_root, weights=student_weights, threads=1, warmup=1),
                   on_progress=ticks.append)
    assert sum(ticks) == 8
    assert res.counts == {"images": 8, "text": 4, "nontext": 4, "skipped": 0,
                          "region_images": 7}  # 3 text images with GT + 4 non-text
    assert res.scorer["name"] == "student" and res.scorer["params"] == 86_417
    assert res.threshold == 0.5 and res.threshold_from == "weights"
    o = res.overall
    assert (o.tp + o.fn, o.fp + o.tn) == (4, 4)
    for it in res.items:  # the image probability is the max region probability (logical OR)
        assert it.region_probs is not None and it.region_probs.shape == (34,)
        assert it.prob == pytest.approx(float(it.region_probs.max()), abs=1e-6)
    text_no_gt = [it for it in res.items if it.is_text and it.region_labels is None]
    assert [Path(it.path).name for it in text_no_gt] == ["syn_3.jpg"]
    assert set(res.per_source) == {"syn", "bg"}
    assert res.per_source["syn"]["text"] == 4 and res.per_source["bg"]["nontext"] == 4
    assert set(res.regions) == {3, 5}
    g3 = res.regions[3]
    assert g3.tp + g3.fp + g3.fn + g3.tn == 7 * 9
    assert set(res.at_recall) == {"0.95", "0.99"}
    assert res.speed.threads == 1 and res.speed.images == 8
    assert res.speed.model_ms > 0 and res.speed.end_to_end_ips > 0
    d = res.to_dict()
    json.dumps(d, allow_nan=False)  # nan became null
    assert d["config"]["data"] == str(textdis_root) and d["config"]["threads"] == 1
    assert len(result_tables(res)) == 5


class SizeScorer:
    """A stand-in scorer: 'text' when the image is square (the fixture's text images are
    96x96, its non-text ones 96x80). No regions."""

    name = "size"
    params = None
    default_threshold = 0.5
    info: dict[str, Any] = {"kind": "test"}
    last_model_s = 0.0

    def score(self, rgb: np.ndarray) -> tuple[float, np.ndarray | None]:
        self.last_model_s = 0.001
        return (0.9 if rgb.shape[0] == rgb.shape[1] else 0.2), None


def test_custom_scorer_reuses_metrics(textdis_root: Path) -> None:
    res = evaluate(EvalConfig(data=textdis_root, warmup=0), scorer=SizeScorer())
    o = res.overall
    assert (o.tp, o.fp, o.fn, o.tn) == (4, 0, 0, 4)
    assert res.auc == 1.0 and res.ap == 1.0
    assert res.best_f is not None and res.best_f.threshold == pytest.approx(0.9)
    assert res.regions == {} and res.region_images == 0
    assert res.scorer == {"name": "size", "params": None, "kind": "test"}
    assert res.speed.model_ms == pytest.approx(1.0)


def test_threshold_option_and_limit(textdis_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.pt"
    save_checkpoint(path, StudentNet(), thresholds={"default": 0.25})
    res = evaluate(EvalConfig(data=textdis_root, weights=path, limit=2, warmup=0))
    assert res.threshold == 0.25 and res.threshold_from == "weights"
    assert res.counts["images"] == 4 and res.counts["text"] == 2
    res = evaluate(EvalConfig(data=textdis_root, weights=path, threshold=0.0, limit=1, warmup=0))
    assert res.threshold == 0.0 and res.threshold_from == "option"
    assert res.overall.recall == 1.0 and res.overall.fpr == 1.0  # everything is text at 0


def test_unreadable_images_are_skipped_not_fatal(textdis_root: Path) -> None:
    (textdis_root / "nontext" / "bg_empty.png").write_bytes(b"")
    (textdis_root / "text" / "syn_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    res = evaluate(EvalConfig(data=textdis_root, warmup=0), scorer=SizeScorer())
    assert res.counts["images"] == 8 and res.counts["skipped"] == 2
    assert {Path(s["path"]).name for s in res.skipped} == {"bg_empty.png", "syn_broken.jpg"}


def test_bad_inputs_raise_textsieve_errors(textdis_root: Path, tmp_path: Path) -> None:
    with pytest.raises(TextsieveError, match="not a TextDis-layout root"):
        evaluate(EvalConfig(data=tmp_path / "nowhere"), scorer=SizeScorer())
    with pytest.raises(CheckpointError, match="not found"):
        evaluate(EvalConfig(data=textdis_root, weights=tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        evaluate(EvalConfig(data=textdis_root, weights=bad))
    with pytest.raises(TextsieveError, match="threshold"):
        evaluate(EvalConfig(data=textdis_root, threshold=1.5), scorer=SizeScorer())
    with pytest.raises(TextsieveError, match="device"):
        evaluate(EvalConfig(data=textdis_root, device="tpu"), scorer=SizeScorer())
    if not torch.cuda.is_available():
        with pytest.raises(TextsieveError, match="cuda"):
            evaluate(EvalConfig(data=textdis_root, device="cuda"), scorer=SizeScorer())
    empty = tmp_path / "empty"
    (empty / "text").mkdir(parents=True)
    with pytest.raises(TextsieveError, match="no images"):
        evaluate(EvalConfig(data=empty), scorer=SizeScorer())
    (textdis_root / "text_gt" / "syn_0_gt.txt").write_text("1 2 3\n")
    with pytest.raises(AnnotationError, match="syn_0_gt.txt:1"):
        evaluate(EvalConfig(data=textdis_root), scorer=SizeScorer())


def test_report_files_are_valid(textdis_root: Path, student_weights: Path, tmp_path: Path) -> None:
    # Threshold 0: every non-text image is a false positive, there is no false negative.
    res = evaluate(EvalConfig(data=textdis_root, weights=student_weights, threshold=0.0,
                              warmup=0))
    out = tmp_path / "report" / "nested"
    paths = write_report(res, out, worst=3)
    names = sorted(p.name for p in paths)
    assert names == ["metrics.json", "pr_curve.png", "worst_false_negatives.png",
                     "worst_false_positives.png"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["images"] == 8 and len(m["items"]) == 8
    assert m["config"]["weights"] == str(student_weights)
    assert 1 <= len(m["pr_curve"]) <= 8 and {"threshold", "precision", "recall"} <= set(
        m["pr_curve"][0])
    assert set(m["regions"]) == {"3x3", "5x5"} and "speed" in m and "per_source" in m
    for name in names[1:]:
        with Image.open(out / name) as im:
            im.verify()
    with Image.open(out / "worst_false_positives.png") as fp, \
            Image.open(out / "worst_false_negatives.png") as fn:
        assert fp.height > fn.height  # 3 tiles vs. the "none" line


def test_jsonable_turns_nan_into_null() -> None:
    d = jsonable({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)], "c": Path("x")})
    assert d == {"a": None, "b": [1.5, 2], "c": "x"}


def test_cli_eval(textdis_root: Path, student_weights: Path, tmp_path: Path) -> None:
    rep = tmp_path / "rep"
    r = runner.invoke(app, ["eval", "--data", str(textdis_root), "--weights", str(student_weights),
                            "--threads", "1", "--report", str(rep), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)  # only the JSON goes to stdout; tables go to stderr
    assert m["counts"]["images"] == 8 and m["speed"]["threads"] == 1 and "items" not in m
    assert "per source" in r.stderr and "end-to-end" in r.stderr
    assert (rep / "metrics.json").is_file() and (rep / "pr_curve.png").is_file()


def _one_line_error(r: Any) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


def test_cli_eval_bad_path_and_missing_weights(
    textdis_root: Path, student_weights: Path, tmp_path: Path
) -> None:
    line = _one_line_error(runner.invoke(
        app, ["eval", "--data", str(tmp_path / "nope"), "--weights", str(student_weights)]))
    assert "not a TextDis-layout root" in line
    line = _one_line_error(runner.invoke(
        app, ["eval", "--data", str(textdis_root), "--weights", str(tmp_path / "none.pt")]))
    assert "weights file not found" in line
    line = _one_line_error(runner.invoke(
        app, ["eval", "--data", str(textdis_root), "--weights", str(student_weights),
              "--threshold", "2"]))
    assert "threshold" in line


def test_cli_eval_without_shipped_weights(textdis_root: Path) -> None:
    try:
        default_weights()
    except CheckpointError:
        line = _one_line_error(runner.invoke(app, ["eval", "--data", str(textdis_root)]))
        assert "--weights" in line
    else:
        pytest.skip("weights/student.pt is shipped: the default weights load")
