from __future__ import annotations

from pathlib import Path

import pytest
import torch

from textsieve.config import StudentConfig, TeacherConfig
from textsieve.errors import CheckpointError
from textsieve.models import StudentNet, TeacherNet, count_params
from textsieve.models.head import pool_regions
from textsieve.models.teacher import VGG16Trunk, make_vgg16_features

PAPER_TEACHER, PAPER_STUDENT = 16.03e6, 0.087e6


def test_parameter_counts_match_paper() -> None:
    teacher = count_params(TeacherNet())
    student = count_params(StudentNet())
    # VGG16 features 14,714,688 + 34 per-region maps 512->64 (1,116,288) + classifier 65.
    assert teacher == 14_714_688 + 34 * (512 * 64 + 64) + 65
    assert abs(teacher / PAPER_TEACHER - 1) < 0.03
    assert abs(student / PAPER_STUDENT - 1) < 0.10


@pytest.mark.parametrize("hw", [(64, 64), (64, 200), (97, 131), (256, 352)])
def test_student_shapes_any_size(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    out = StudentNet().eval()(torch.rand(2, 3, *hw))
    assert out.logits.shape == (2, 34) and out.feats.shape == (2, 34, 64)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.feats).all()


@pytest.mark.parametrize("hw", [(64, 64), (80, 112)])
def test_teacher_shapes(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    out = TeacherNet().eval()(torch.rand(1, 3, *hw))
    assert out.logits.shape == (1, 34) and out.feats.shape == (1, 34, 64)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("net", ["student", "teacher"])
def test_every_parameter_gets_a_gradient(net: str) -> None:
    torch.manual_seed(0)
    model = StudentNet() if net == "student" else TeacherNet()
    model.train()
    out = model(torch.rand(2, 3, 64, 96))
    (out.logits.sum() + out.feats.pow(2).mean()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_region_order_3x3_first_row_major() -> None:
    x = torch.zeros(1, 1, 30, 30)
    x[0, 0, 0:10, 20:30] = 1.0  # top-right ninth of the image
    regions = pool_regions(x, mode="max")[0, :, 0]
    assert regions[:9].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    # In 5x5 the top-right 10x10 block covers cells (0,3),(0,4),(1,3),(1,4) partly: cols 18-30.
    assert regions[9 + 4].item() == 1 and regions[9 + 0].item() == 0


def test_feats_are_pre_activation() -> None:
    torch.manual_seed(0)
    out = StudentNet().eval()(torch.rand(1, 3, 64, 64))
    assert (out.feats < 0).any()  # a post-ReLU tensor would have no negatives


def test_student_config_validation() -> None:
    with pytest.raises(ValueError, match="6 conv"):
        StudentNet(StudentConfig(channels=(8, 8), strides=(2, 2)))
    with pytest.raises(ValueError, match="equal widths"):
        StudentNet(StudentConfig(channels=(8, 8, 8, 8, 16, 8)))
    with pytest.raises(ValueError, match="backbone"):
        TeacherNet(TeacherConfig(backbone="resnet"))


def test_vgg16_loads_local_imagenet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = make_vgg16_features()
    sd = {f"features.{k}": v for k, v in ref.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    trunk = VGG16Trunk()
    trunk.load_imagenet(path)
    assert torch.equal(trunk.features[28].weight, ref[28].weight)
    torch.save(
        {k: v for k, v in sd.items() if not k.startswith("features.28")}, tmp_path / "bad.pth"
    )
    with pytest.raises(CheckpointError, match="missing"):
        VGG16Trunk().load_imagenet(tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot load"):
        VGG16Trunk().load_imagenet(tmp_path / "junk.pth")
