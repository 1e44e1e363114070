"""Teacher training: loss goes down, checkpoints, resume, ppocr feature cache, CLI, schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_ppocr import needs_extra
from typer.testing import CliRunner

from textsieve.checkpoint import load_model
from textsieve.cli import app
from textsieve.config import TeacherConfig, load_config
from textsieve.data import DataConfig
from textsieve.errors import CheckpointError, ConfigError
from textsieve.train.loop import PlateauLR
from textsieve.train.teacher import TrainConfig, fit_teacher

TINY = DataConfig(short_side=32, variants=1)  # VGG16 at 32 px: fast enough for CI


def _cfg(root: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict = dict(data_roots=(str(root),), out_dir=str(out), epochs=2, batch_size=4, lr=1e-2,
                      data=TINY, teacher=TeacherConfig(backbone="vgg16"), threads=1, workers=0)
    base.update(kw)
    return TrainConfig(**base)


def test_two_epochs_lower_the_loss_and_save_checkpoints(textdis_root: Path, tmp_path: Path) -> None:
    # variants=1: both epochs see the same pictures, so their losses are comparable.
    result = fit_teacher(_cfg(textdis_root, tmp_path / "run"))
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 2 and losses[1] < losses[0]
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["best.pt", "config.yaml", "epoch-001.pt", "epoch-002.pt", "last.pt",
                     "metrics.jsonl"]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["stage"] == "teacher"
    assert {"model", "optimizer", "config", "metrics", "scheduler"} <= set(ckpt)
    assert ckpt["config"]["teacher"]["backbone"] == "vgg16"
    # Without validation, best.pt is the epoch with the lowest training loss.
    assert result.monitor == "train_loss" and result.best_epoch == 2
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    # The written config reloads to the same config.
    assert load_config(TrainConfig, tmp_path / "run" / "config.yaml") == result_cfg(result)


def result_cfg(result: object) -> TrainConfig:
    ckpt = torch.load(Path(result.last_path), weights_only=True)  # type: ignore[attr-defined]
    return load_config(TrainConfig, None, ckpt["config"])


def test_resume_continues_from_the_saved_epoch(textdis_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(textdis_root, tmp_path / "a", data=DataConfig(short_side=32, variants=2))
    fit_teacher(TrainConfig(**{**cfg.__dict__, "epochs": 1}))
    resumed = fit_teacher(cfg, resume=True)
    assert [h["epoch"] for h in resumed.history] == [2]
    straight = fit_teacher(_cfg(textdis_root, tmp_path / "b",
                                data=DataConfig(short_side=32, variants=2)))
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in b["model"]:  # interrupted + resumed == uninterrupted
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
    assert resumed.history[0]["train_loss"] == pytest.approx(straight.history[1]["train_loss"])
    with pytest.raises(CheckpointError):
        fit_teacher(_cfg(textdis_root, tmp_path / "empty"), resume=True)


@needs_extra
def test_ppocr_trains_on_cached_features(textdis_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cfg = TrainConfig(
        data_roots=(str(textdis_root),), val_root=str(textdis_root), out_dir=str(tmp_path / "p"),
        cache_dir=str(cache), epochs=3, batch_size=4, optimizer="adamw", lr=1e-2,
        data=DataConfig(short_side=64, variants=2), teacher=TeacherConfig(backbone="ppocr"),
        threads=1, workers=0,
    )
    first = fit_teacher(cfg)
    entries = sorted(cache.rglob("*.npz"))
    # 8 pictures x 2 variants; validation (same root, identity variant) shares the entries.
    assert len(entries) == 8 * 2
    assert first.monitor == "image_f1" and 1 <= first.best_epoch <= 3
    assert all(0.0 <= h["image_f1"] <= 1.0 for h in first.history)
    # Second run: every feature comes from the cache, and the run repeats exactly.
    again = fit_teacher(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "q")}))
    assert sorted(cache.rglob("*.npz")) == entries
    assert [h["train_loss"] for h in again.history] == [h["train_loss"] for h in first.history]
    model, meta = load_model(first.best_path)
    assert meta["arch"] == "teacher" and meta["epoch"] == first.best_epoch
    assert model(torch.rand(1, 3, 64, 64)).logits.shape == (1, 34)


def test_cli_train_teacher(textdis_root: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"batch_size": 4, "lr": 0.01, "threads": 1, "workers": 0,
                                   "data": {"short_side": 32, "variants": 2},
                                   "teacher": {"backbone": "vgg16"}}))
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["train-teacher", "--data", str(textdis_root), "--val",
                                 str(textdis_root), "--config", str(cfg), "--out", str(out),
                                 "--epochs", "1", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("best.pt") and (out / "best.pt").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 3 and saved["epochs"] == 1 and saved["data"]["variants"] == 2
    assert "image_f1" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("args, message", [
    (["--backbone", "resnet"], "backbone"),
    (["--backbone", "ppocr", "--init", "w.pt"], "vgg16 backbone only"),
    (["--data", "/nonexistent/root"], "not a TextDis-layout root"),
])
def test_cli_bad_input_is_one_red_line(textdis_root: Path, tmp_path: Path, args: list[str],
                                       message: str) -> None:
    base = ["train-teacher", "--out", str(tmp_path / "o"), "--epochs", "1"]
    if "--data" not in args:
        base += ["--data", str(textdis_root)]
    r = CliRunner().invoke(app, base + args)
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(TrainConfig, bad)


def test_packaged_configs_load() -> None:
    from importlib import resources

    for name, backbone in (("teacher_vgg16.yaml", "vgg16"), ("teacher_ppocr.yaml", "ppocr")):
        path = Path(str(resources.files("textsieve") / "configs" / name))
        assert load_config(TrainConfig, path).backbone == backbone
    paper = load_config(TrainConfig, Path(str(resources.files("textsieve") / "configs" /
                                              "teacher_vgg16.yaml")))
    assert (paper.optimizer, paper.lr, paper.batch_size) == ("sgd", 1e-4, 1) == (
        TrainConfig().optimizer, TrainConfig().lr, TrainConfig().batch_size)


def test_plateau_divides_lr_by_ten_after_patience() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PlateauLR(opt, factor=0.1, patience=2, threshold=0.0)
    lrs = []
    for loss in (1.0, 0.9, 0.95, 0.9, 0.8, 0.85, 0.85, 0.7):
        sched.step(loss)
        lrs.append(sched.lr)
    # 0.95 and 0.9 do not beat 0.9 -> reduce; 0.85, 0.85 do not beat 0.8 -> reduce again.
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01])
    state = sched.state_dict()
    other = PlateauLR(opt, patience=2)
    other.load_state_dict(state)
    assert other.state_dict() == state
