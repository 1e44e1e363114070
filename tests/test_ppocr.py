"""The frozen PP-OCRv4 trunk: shapes, input conversion, teacher integration, missing extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from textsieve.config import TeacherConfig
from textsieve.errors import MissingExtraError
from textsieve.models import TeacherNet, ppocr


def _have_extra() -> bool:
    try:
        ppocr.model_path()
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except (MissingExtraError, ImportError):
        return False
    return True


needs_extra = pytest.mark.skipif(not _have_extra(), reason="textsieve[ocr] extra not installed")


@pytest.fixture(scope="module")
def trunk() -> ppocr.PPOCRTrunk:
    if not _have_extra():
        pytest.skip("textsieve[ocr] extra not installed")
    return ppocr.PPOCRTrunk(threads=1)


def test_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingExtraError, match=r"pip install 'textsieve\[ocr\]'"):
        ppocr.PPOCRTrunk()


@needs_extra
def test_map_shapes(trunk: ppocr.PPOCRTrunk) -> None:
    x = torch.rand(2, 3, 64, 96)
    neck, deep = trunk(x)
    assert neck.shape == (2, 96, 16, 24)
    assert deep.shape == (2, 384, 2, 3)
    assert all(torch.isfinite(m).all() for m in (neck, deep))
    assert trunk.channels == ppocr.PPOCR_CHANNELS == (96, 384)


@needs_extra
def test_optional_probability_map() -> None:
    trunk = ppocr.PPOCRTrunk(threads=1, with_prob=True)
    neck, deep, prob = trunk(torch.rand(1, 3, 64, 96))
    assert prob.shape == (1, 1, 64, 96) and 0.0 <= prob.min() and prob.max() <= 1.0
    assert trunk.channels == (96, 384, 1)
    assert trunk.identity != ppocr.PPOCRTrunk(threads=1).identity  # distinct cache entries


@needs_extra
def test_sizes_are_rounded_to_multiples_of_32(trunk: ppocr.PPOCRTrunk) -> None:
    neck, deep = trunk(torch.rand(1, 3, 70, 100))  # -> 64 x 96
    assert neck.shape[-2:] == (16, 24) and deep.shape[-2:] == (2, 3)
    with pytest.raises(ValueError):
        trunk(torch.rand(3, 64, 64))


@needs_extra
def test_input_is_bgr_and_normalised_like_the_detector(trunk: ppocr.PPOCRTrunk) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    ours = trunk(x)
    # What the detector itself expects: BGR, (x/255 - 0.5) / 0.5 on 0..255 pixels.
    bgr255 = (x * 255.0)[:, [2, 1, 0]].numpy()
    ref = trunk.session.run(trunk.outputs, {trunk.input_name: (bgr255 / 255.0 - 0.5) / 0.5})
    for a, b, k in zip(ours, ref, trunk.scales, strict=True):
        np.testing.assert_allclose(a.numpy(), b * k, rtol=1e-3, atol=1e-3)
    # And the colour order matters (an RGB input would give other maps).
    swapped = trunk(x[:, [2, 1, 0]])
    assert not torch.allclose(swapped[0], ours[0])


@needs_extra
def test_teacher_with_attached_trunk() -> None:
    model = TeacherNet(TeacherConfig(backbone="ppocr"))
    assert not any("trunk" in k for k in model.state_dict())  # the trunk is never saved
    with pytest.raises(RuntimeError):
        model(torch.rand(1, 3, 64, 64))
    ppocr.attach_trunk(model, threads=1)
    out = model(torch.rand(2, 3, 64, 96))
    assert out.logits.shape == (2, 34) and torch.isfinite(out.logits).all()
    out.logits.sum().backward()  # the head trains; the frozen trunk has no parameters
    assert all(p.grad is not None for p in model.parameters())
    assert len(model.pool(model.trunk(torch.rand(1, 3, 64, 64)))) == len(ppocr.PPOCR_CHANNELS)
