"""Distillation: every Table II mode runs, stage 1 trains the feature path only, resume is exact,
teacher outputs are cached per (picture, variant), the CLI works and bad input fails cleanly.

The teacher here is a randomly initialised *student* network saved as a checkpoint: distillation
needs only ``RegionOutput(logits, feats)`` with the same D, and the small network keeps the tests
fast. Pictures are 96x96 and trained at short side 64, so every mode's epoch is one step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from textsieve.checkpoint import load_model, read_checkpoint, save_checkpoint
from textsieve.cli import app
from textsieve.config import StudentConfig
from textsieve.data import DataConfig, build_samples, load_variant, make_variants
from textsieve.errors import ConfigError
from textsieve.models import StudentNet
from textsieve.train.distill import DistillConfig, distill
from textsieve.train.loop import seed_everything
from textsieve.train.targets import teacher_table

DATA = DataConfig(variants=2, short_side=64)


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Runs here use one torch thread (``threads=1``): tiny tensors gain nothing from more, and
    on a shared CPU spinning threads are slow. The session's setting is restored afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def teacher_path(tmp_path: Path) -> Path:
    torch.manual_seed(123)
    path = tmp_path / "teacher.pt"
    save_checkpoint(path, StudentNet(), stage="test", epoch=0)
    return path


def _cfg(root: Path, teacher: Path, out: Path, **kw: object) -> DistillConfig:
    base = dict(teacher=str(teacher) if teacher else None, data_roots=(str(root),),
                val_root=str(root), out_dir=str(out), cache_dir=str(out.parent / "cache"),
                workers=0, batch_size=8, threads=1,
                epochs_stage1=1, epochs_stage2=1, data=DATA)
    base.update(kw)
    return DistillConfig(**base)


def _lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mode,keys,absent", [
    ("hard", {"l_hard"}, {"l_k", "l_g", "k_t"}),
    ("soft", {"l_k"}, {"l_g", "l_d", "k_t"}),
    ("soft-adv", {"l_k", "l_g", "l_d", "k_t", "m_global"}, {"l_hard"}),
    ("full", {"l_k", "l_g", "l_d", "k_t", "m_global"}, {"l_hard"}),
])
def test_table2_modes_run_one_step(textdis_root: Path, teacher_path: Path, tmp_path: Path,
                                   mode: str, keys: set, absent: set) -> None:
    out = tmp_path / mode
    teacher = None if mode == "hard" else teacher_path
    result = distill(_cfg(textdis_root, teacher, out, mode=mode))
    lines = _lines(out)
    assert [ln["stage"] for ln in lines] == ([1, 2] if mode == "full" else [2])
    last = lines[-1]
    assert keys <= set(last) and not absent & set(last)
    assert {"lr", "image_f1", "image_best_f1", "region_f1", "train_loss"} <= set(last)
    assert all(torch.isfinite(torch.tensor(last[k])) for k in keys)
    if mode == "full":
        assert lines[0]["l_a"] > 0 and (out / "stage1.pt").is_file()
    assert result.best_path == out / "best.pt"
    model, meta = load_model(out / "best.pt")
    assert meta["arch"] == "student" and meta["mode"] == mode
    assert (out / "stage2-epoch-001.pt").is_file() and (out / "stage2.pt").is_file()


def test_stage1_trains_only_the_feature_path(textdis_root: Path, teacher_path: Path,
                                             tmp_path: Path) -> None:
    cfg = _cfg(textdis_root, teacher_path, tmp_path / "s1", stages=(1,), lr_stage1=1e-2)
    seed_everything(cfg.seed)
    init = StudentNet(cfg.student).state_dict()  # distill builds its student right after seeding
    distill(cfg)
    assert not (tmp_path / "s1" / "stage2.pt").exists()
    after = read_checkpoint(tmp_path / "s1" / "stage1.pt")["model"]
    for name in ("head.classifier.weight", "head.classifier.bias"):
        assert torch.equal(after[name], init[name]), name
    for name in ("convs.0.0.weight", "head.map.linear.weight"):
        assert not torch.equal(after[name], init[name]), name
    # stage 2 alone then starts from stage1.pt
    distill(_cfg(textdis_root, teacher_path, tmp_path / "s1", stages=(2,)))
    assert (tmp_path / "s1" / "best.pt").is_file()


def test_resume_is_exact_and_restores_k(textdis_root: Path, teacher_path: Path,
                                        tmp_path: Path) -> None:
    kw = dict(mode="soft-adv", batch_size=4, k0=0.5, lambda_k=0.5, optimizer="adamw",
              lr_stage2=1e-3)
    distill(_cfg(textdis_root, teacher_path, tmp_path / "a", epochs_stage2=2, **kw))
    distill(_cfg(textdis_root, teacher_path, tmp_path / "b", epochs_stage2=1, **kw))
    distill(_cfg(textdis_root, teacher_path, tmp_path / "b", epochs_stage2=2, **kw), resume=True)
    a = read_checkpoint(tmp_path / "a" / "stage2-epoch-002.pt")
    b = read_checkpoint(tmp_path / "b" / "stage2-epoch-002.pt")
    for name, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][name].float(), atol=1e-6), name
    assert 0.0 <= a["balance"]["k"] <= 1.0 and a["balance"]["k"] != 0.5  # k_t moved, stored
    assert b["balance"]["k"] == pytest.approx(a["balance"]["k"], abs=1e-7)
    for name, value in a["disc"].items():
        assert torch.allclose(value, b["disc"][name], atol=1e-6), name
    assert [ln["epoch"] for ln in _lines(tmp_path / "b")] == [1, 2]


def test_stage1_resume_is_exact(textdis_root: Path, teacher_path: Path, tmp_path: Path) -> None:
    kw = dict(stages=(1,), batch_size=4, optimizer="adamw", lr_stage1=1e-3)
    distill(_cfg(textdis_root, teacher_path, tmp_path / "a", epochs_stage1=2, **kw))
    distill(_cfg(textdis_root, teacher_path, tmp_path / "b", epochs_stage1=1, **kw))
    (tmp_path / "b" / "stage1.pt").unlink()  # as if stopped before the stage ended
    distill(_cfg(textdis_root, teacher_path, tmp_path / "b", epochs_stage1=2, **kw), resume=True)
    a = read_checkpoint(tmp_path / "a" / "stage1.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "stage1.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_teacher_table_rows_and_cache(textdis_root: Path, teacher_path: Path,
                                      tmp_path: Path) -> None:
    torch.set_num_threads(1)
    teacher, _ = load_model(teacher_path)
    samples = build_samples([textdis_root], DATA)
    variants = make_variants(2, DATA.degrees)
    calls: list[int] = []
    table = teacher_table(teacher, teacher_path, samples, variants, DATA, tmp_path / "c",
                          workers=0, on_progress=lambda d, t: calls.append(d))
    assert table.logits.shape == (len(samples) * 2, 34) and table.feats.shape[-1] == 64
    assert calls and table.valid.all()
    i, v = 2, 1  # row i * K + v: picture 2, flipped
    with torch.no_grad():
        ref = teacher(load_variant(samples[i], variants[v], DATA).image.unsqueeze(0))
    row = table.rows(torch.tensor(i), torch.tensor(v))
    assert torch.allclose(table.logits[row], ref.logits[0], atol=1e-5)
    assert torch.allclose(table.feats[row].float(), ref.feats[0], atol=1e-2)  # stored as fp16
    calls.clear()
    again = teacher_table(teacher, teacher_path, samples, variants, DATA, tmp_path / "c",
                          workers=0, on_progress=lambda d, t: calls.append(d))
    assert not calls and torch.equal(again.feats, table.feats)  # read from the cache


def test_bad_configs(textdis_root: Path, teacher_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode"):
        DistillConfig(mode="distil")
    with pytest.raises(ConfigError, match="stage 1 belongs"):
        DistillConfig(mode="soft", stages=(1,))
    with pytest.raises(ConfigError, match="needs a --teacher"):
        distill(_cfg(textdis_root, None, tmp_path / "x", mode="soft"))
    other = tmp_path / "t32.pt"
    save_checkpoint(other, StudentNet(StudentConfig(dim=32)), stage="test", epoch=0)
    with pytest.raises(ConfigError, match="dim"):
        distill(_cfg(textdis_root, other, tmp_path / "y", mode="soft"))
    distill(_cfg(textdis_root, None, tmp_path / "h", mode="hard"))
    with pytest.raises(ConfigError, match="--resume"):
        distill(_cfg(textdis_root, None, tmp_path / "h", mode="hard"))
    with pytest.raises(ConfigError, match="run stage 1 first"):
        distill(_cfg(textdis_root, teacher_path, tmp_path / "z", stages=(2,)))


def test_cli_distill(textdis_root: Path, teacher_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("workers: 0\nbatch_size: 8\nepochs_stage1: 1\n"
                      "data:\n  variants: 2\n  short_side: 64\n")
    out = tmp_path / "cli"
    args = ["distill", "--teacher", str(teacher_path), "--data", str(textdis_root), "--val",
            str(textdis_root), "--out", str(out), "--config", str(config), "--mode", "soft-adv",
            "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert str(out / "best.pt") in r.output
    r = CliRunner().invoke(app, args)  # same --out again without --resume
    assert r.exit_code == 2 and "--resume" in r.output
    r = CliRunner().invoke(app, [*args[:-2], "--stages", "1", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "stage 1 belongs" in r.output
    r = CliRunner().invoke(app, [*args, "--stages", "one"])
    assert r.exit_code == 2 and "--stages" in r.output


def test_kept_pictures_give_the_same_run(textdis_root: Path, teacher_path: Path,
                                         tmp_path: Path) -> None:
    kw = dict(mode="soft", epochs_stage2=2, batch_size=4, batching="mixed")
    distill(_cfg(textdis_root, teacher_path, tmp_path / "a", **kw))
    distill(_cfg(textdis_root, teacher_path, tmp_path / "b", keep_pictures=True, **kw))
    a = read_checkpoint(tmp_path / "a" / "stage2.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "stage2.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mixed_batches_cover_every_picture_once_and_share_a_size() -> None:
    from textsieve.data import Item
    from textsieve.train.rundata import MixedBatchSampler, _collate

    sizes = [(448, 256)] * 5 + [(352, 256)] * 4 + [(256, 352)] * 3
    sampler = MixedBatchSampler(sizes, batch_size=4, seed=1)
    sampler.set_epoch(1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(12)) and len(batches) == len(sampler)
    for b in batches:  # landscape and portrait pictures are never mixed
        assert len({sizes[i][0] >= sizes[i][1] for i in b}) == 1
    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(2)
    assert list(sampler) != batches
    items = [Item(torch.rand(3, h, w), torch.zeros(34), torch.ones(34, dtype=torch.bool), False)
             for w, h in [(448, 256), (320, 256)]]
    batch = _collate([(0, 0, items[0]), (1, 1, items[1]), (2, 0, None)])
    assert batch.images.shape == (2, 3, 256, 384)  # the mean size
    assert batch.index.tolist() == [0, 1] and batch.variant.tolist() == [0, 1]
    assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0
