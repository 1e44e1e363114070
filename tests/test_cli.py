from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from textsieve import __version__
from textsieve.cli import app

runner = CliRunner()


def test_help_lists_every_subcommand() -> None:
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0, r.output
    commands = ("labels", "train-teacher", "distill", "eval", "filter", "show", "autolabel",
                "info", "calibrate")
    for cmd in commands:
        assert cmd in r.output


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"textsieve {__version__}"


def test_python_dash_m() -> None:
    cmd = [sys.executable, "-m", "textsieve", "--version"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 0 and __version__ in r.stdout


def test_labels_command(textdis_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    r = runner.invoke(app, ["labels", str(textdis_root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8 and sum(x["is_text"] for x in rows) == 4
    assert "text images" in r.output


def test_labels_msp_rule_gives_fewer_positives(textdis_root: Path, tmp_path: Path) -> None:
    def positives(rule: str) -> int:
        out = tmp_path / f"{rule}.jsonl"
        r = runner.invoke(app, ["labels", str(textdis_root), "-o", str(out), "--rule", rule])
        assert r.exit_code == 0, r.output
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        return sum(sum(x["regions"]) for x in rows if x["regions"])

    assert positives("msp") < positives("paper")


def test_bad_path_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    r = runner.invoke(app, ["labels", str(tmp_path / "nope"), "-o", str(tmp_path / "x.jsonl")])
    assert r.exit_code == 2
    assert "Traceback" not in r.output and "not a TextDis-layout root" in r.output
    r = runner.invoke(app, ["labels", str(tmp_path), "--rule", "loose"])
    assert r.exit_code == 2 and "rule" in r.output


def test_info_prints_parameter_counts(student_weights: Path) -> None:
    r = runner.invoke(app, ["info", "--weights", str(student_weights)])
    assert r.exit_code == 0, r.output
    assert "teacher (vgg16) parameters: 15,831,041" in r.output
    assert "student parameters: 86,417" in r.output
    assert "arch=student" in r.output
