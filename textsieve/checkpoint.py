"""Self-describing checkpoints and weight files.

A file holds plain types and tensors only, so ``torch.load(path, weights_only=True)`` reads it:
``{"arch", "model", "config", "stage", "epoch", "metrics", "thresholds", "version", ...}``.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textsieve import __version__
from textsieve.config import StudentConfig, TeacherConfig, from_dict, to_dict
from textsieve.errors import CheckpointError
from textsieve.models import StudentNet, TeacherNet

ARCHS = ("student", "teacher")
DEFAULT_THRESHOLD = 0.5


def save_checkpoint(path: Path, model: nn.Module, **meta: Any) -> None:
    """Write ``model`` and its metadata atomically (temp file + ``os.replace``).

    Args:
        path: destination file.
        model: a :class:`StudentNet` or :class:`TeacherNet`.
        **meta: extra plain-typed entries (stage, epoch, config, metrics, optimizer, ...).
    """
    arch = "student" if isinstance(model, StudentNet) else "teacher"
    payload = {
        "arch": arch,
        "model_config": to_dict(model.cfg),
        "model": model.state_dict(),
        "version": __version__,
        **meta,
    }
    write_checkpoint(path, payload)


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically: a killed run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a weights file is shared data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``) or raise :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"cannot read weights {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("arch") not in ARCHS or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a textsieve checkpoint (no arch/model entries)")
    return ckpt


def build_model(arch: str, model_config: dict[str, Any] | None = None) -> nn.Module:
    """A fresh network of ``arch`` with the given config dict."""
    if arch == "student":
        return StudentNet(from_dict(StudentConfig, model_config or {}, "model_config"))
    if arch == "teacher":
        return TeacherNet(from_dict(TeacherConfig, model_config or {}, "model_config"))
    raise CheckpointError(f"unknown arch {arch!r}")


def load_model(path: Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the network stored in ``path``, load its weights, eval mode.

    Returns:
        (model, checkpoint dict without the state dict).
    """
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["arch"], ckpt.get("model_config"))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the architecture: {str(e)[:300]}"
        ) from None
    if ckpt["arch"] == "teacher" and model.cfg.backbone == "ppocr":
        from textsieve.models.ppocr import attach_trunk

        attach_trunk(model)
    model.eval().to(device)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return model, meta


def recall_key(recall: float) -> str:
    """Name of the stored threshold preset that reaches ``recall`` on the calibration data."""
    return f"recall_{recall:g}"


def threshold_of(meta: dict[str, Any], recall: float | None = None) -> float:
    """A decision threshold stored with the weights.

    Args:
        meta: the checkpoint dict (as :func:`load_model` returns it).
        recall: pick the preset calibrated for this recall (e.g. 0.99) instead of the default.

    Returns:
        The threshold; 0.5 when the weights store none and no preset is asked for.

    Raises:
        CheckpointError: when the asked-for recall preset is not stored with the weights.
    """
    th = meta.get("thresholds") or {}
    if recall is None:
        return float(th.get("default", DEFAULT_THRESHOLD))
    key = recall_key(recall)
    if key not in th:
        have = sorted(k.removeprefix("recall_") for k in th if k.startswith("recall_"))
        raise CheckpointError(
            f"these weights store no threshold for recall {recall:g} "
            f"(available: {', '.join(have) or 'none'}); pass --threshold instead"
        )
    return float(th[key])


def default_weights() -> Path:
    """Path of the shipped student weights (``weights/student.pt``, package ``textsieve.weights``).

    Raises:
        CheckpointError: when the package was installed without them.
    """
    from importlib import resources

    try:
        path = Path(str(resources.files("textsieve.weights") / "student.pt"))
    except ModuleNotFoundError:
        path = Path(__file__).resolve().parent.parent / "weights" / "student.pt"
    if not path.is_file():
        raise CheckpointError(
            "no shipped weights found (weights/student.pt); pass --weights PATH to a checkpoint"
        )
    return path
