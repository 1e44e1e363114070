from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textsieve.checkpoint import load_model, read_checkpoint, save_checkpoint, threshold_of
from textsieve.config import StudentConfig
from textsieve.errors import CheckpointError
from textsieve.models import StudentNet, TeacherNet


def test_round_trip_is_weights_only_and_exact(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = StudentNet(StudentConfig(channels=(8, 8, 8, 8, 16, 16), dim=16)).eval()
    path = tmp_path / "s.pt"
    save_checkpoint(
        path, model, stage="distill2", epoch=7, metrics={"f": 0.9}, thresholds={"default": 0.37}
    )
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == "student" and raw["epoch"] == 7 and raw["model_config"]["dim"] == 16
    loaded, meta = load_model(path)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded(x).logits, model(x).logits)
    assert threshold_of(meta) == 0.37 and "model" not in meta
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temp file left


def test_teacher_round_trip(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "t.pt", TeacherNet(), stage="teacher")
    model, meta = load_model(tmp_path / "t.pt")
    assert isinstance(model, TeacherNet) and meta["arch"] == "teacher"
    assert threshold_of(meta) == 0.5


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a textsieve checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    sd = StudentNet().state_dict()
    torch.save({"arch": "student", "model": sd, "model_config": {"dim": 32}}, tmp_path / "mis.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "mis.pt")
