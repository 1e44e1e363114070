"""Frozen PP-OCRv4 detection trunk (onnxruntime) for the ``ppocr`` teacher backbone.

The PP-OCRv4 text detector ships inside the ``rapidocr-onnxruntime`` wheel
(``rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx``, Apache-2.0). It is a *text* network,
so its intermediate maps already separate text from clutter; the teacher keeps it frozen and only
trains the region head on top. Its graph has a single output (the probability map), so the maps
we need are exposed as extra graph outputs, in memory, with the ``onnx`` package:

- ``p2o.Concat.1``: the neck (DB-FPN) output, (B, 96, H/4, W/4), pooled like VGG's conv4_3;
- ``p2o.Add.215``: the backbone's deepest stage, (B, 384, H/32, W/32), pooled like conv5_3.

The detector's own probability map (``sigmoid_0.tmp_0``, (B, 1, H, W)) can be returned as a
third map (``with_prob``), but it did not help the teacher: on train -> dev with the packaged
config, mean of 3 seeds, dev image F 0.963 with it and 0.962 without, AUC 0.9923 vs 0.9924
(and 0.936 vs 0.947 without the image-level loss term). ``PPOCR_CHANNELS`` has two entries.

The detector expects BGR, ``(x/255 - 0.5) / 0.5``, both sides multiples of 32. The trunk takes
what every textsieve network takes, an RGB batch in [0, 1], and converts it here.

The neck's activations are in the hundreds (on the dev set: mean 147, std 151, max 3784), two
orders of magnitude above the other maps; the trunk returns it times ``1/128`` (``PPOCR_SCALES``,
a power of two, exact in float16). With unscaled inputs the head's initial logits are huge; in
a first comparison (1 variant, AdamW, 25 epochs) its best dev image F was 0.90 instead of 0.95.

onnx and onnxruntime are an optional extra (``pip install 'textsieve[ocr]'``); they are imported
lazily and a :class:`MissingExtraError` says what to install.
"""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from textsieve.errors import MissingExtraError, TextsieveError

log = logging.getLogger(__name__)

# Channels of the maps the teacher uses, in order (neck, deepest backbone stage).
PPOCR_CHANNELS: tuple[int, ...] = (96, 384)
# Graph tensors behind them, and the optional third map (the probability map, 1 channel).
PROB_CHANNELS = 1
PPOCR_OUTPUTS: tuple[str, ...] = ("p2o.Concat.1", "p2o.Add.215", "sigmoid_0.tmp_0")
PPOCR_SCALES: tuple[float, ...] = (1 / 128, 1.0, 1.0)
MODEL_NAME = "ch_PP-OCRv4_det_infer.onnx"
INSTALL_HINT = "pip install 'textsieve[ocr]'"


def _import(name: str) -> Any:
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtraError(
            f"the ppocr backbone needs the optional package {name!r}: {INSTALL_HINT}"
        ) from None


def model_path() -> Path:
    """Path of the PP-OCRv4 detection model inside the installed rapidocr-onnxruntime wheel.

    Raises:
        MissingExtraError: when rapidocr-onnxruntime is not installed.
        TextsieveError: when the wheel does not contain the model.
    """
    pkg = _import("rapidocr_onnxruntime")
    path = Path(pkg.__file__).resolve().parent / "models" / MODEL_NAME
    if not path.is_file():
        raise TextsieveError(f"{path} not found: reinstall rapidocr-onnxruntime ({INSTALL_HINT})")
    return path


@lru_cache(maxsize=2)
def _graph_bytes(path: str) -> tuple[bytes, str]:
    """The detector graph with the extra outputs added, serialised, and a short id of the file."""
    onnx = _import("onnx")
    raw = Path(path).read_bytes()
    model = onnx.load_from_string(raw)
    produced = {o for node in model.graph.node for o in node.output}
    existing = {o.name for o in model.graph.output}
    for name in PPOCR_OUTPUTS:
        if name not in produced:
            raise TextsieveError(f"{path}: graph has no tensor {name!r} (unexpected model version)")
        if name not in existing:
            # Shape left unspecified: onnxruntime infers it; a wrong guess here would be an error.
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return model.SerializeToString(), digest


def round32(n: int) -> int:
    """Nearest positive multiple of 32 (the detector downsamples five times)."""
    return max(32, int(round(n / 32)) * 32)


class PPOCRTrunk:
    """The frozen detector as a callable: RGB (B, 3, H, W) in [0, 1] -> list of stage maps.

    Not an ``nn.Module``: it has no trainable parameters and is never part of a state dict, so
    a ppocr teacher checkpoint holds the head only. The onnxruntime session is built once.

    Args:
        threads: onnxruntime intra-op threads (0: onnxruntime's default).
        with_prob: also return the detector's probability map (third map, 1 channel; the
            teacher does not use it, see the module docstring).
        path: the ``.onnx`` file; defaults to the one inside rapidocr-onnxruntime.
    """

    def __init__(self, threads: int = 1, with_prob: bool = False, path: Path | None = None) -> None:
        ort = _import("onnxruntime")
        self.path = Path(path) if path is not None else model_path()
        graph, digest = _graph_bytes(str(self.path))
        self.outputs = list(PPOCR_OUTPUTS if with_prob else PPOCR_OUTPUTS[:2])
        self.channels = PPOCR_CHANNELS + ((PROB_CHANNELS,) if with_prob else ())
        self.scales = PPOCR_SCALES[: len(self.outputs)]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the graph's unused initialisers would flood stderr
        self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        # Identity of what the trunk computes: part of every feature-cache key.
        scales = "+".join(f"{v:g}" for v in self.scales)
        self.identity = f"ppocrv4det-{digest}-{'+'.join(self.outputs)}-x{scales}"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps for an RGB batch.

        Args:
            x: (B, 3, H, W) float RGB in [0, 1], any H, W >= 1; resized to multiples of 32 here
                (resizing, not padding, so the region grid still covers the whole image).

        Returns:
            [(B, 96, H'/4, W'/4) neck / 128, (B, 384, H'/32, W'/32)] and, with ``with_prob``,
            (B, 1, H', W'), on the device of ``x`` (H', W' = H, W rounded to multiples of 32).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got {tuple(x.shape)}")
        device = x.device
        x = x.detach().float().cpu()
        h, w = x.shape[-2:]
        th, tw = round32(h), round32(w)
        if (th, tw) != (h, w):
            x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
        bgr = (x.flip(1) - 0.5) / 0.5  # RGB -> BGR, then the detector's own normalisation
        outs = self.session.run(self.outputs, {self.input_name: bgr.contiguous().numpy()})
        maps = [torch.from_numpy(o) for o in outs]
        return [(m * k if k != 1.0 else m).to(device)
                for m, k in zip(maps, self.scales, strict=True)]


def attach_trunk(model: nn.Module, threads: int = 1) -> PPOCRTrunk:
    """Give a ppocr :class:`~textsieve.models.TeacherNet` its frozen trunk (in place).

    The trunk returns as many maps as the teacher has channel entries (``model.channels``).

    Args:
        model: a teacher built with ``backbone="ppocr"``.
        threads: onnxruntime intra-op threads.

    Returns:
        The attached trunk.
    """
    channels = tuple(getattr(model, "channels", PPOCR_CHANNELS))
    if channels not in (PPOCR_CHANNELS, PPOCR_CHANNELS + (PROB_CHANNELS,)):
        raise TextsieveError(f"teacher channels {channels} do not match the ppocr trunk")
    trunk = PPOCRTrunk(threads=threads, with_prob=len(channels) == 3)
    model.trunk = trunk
    return trunk
