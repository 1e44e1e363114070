"""Plain frozen dataclass configs and a strict YAML loader.

YAML may only override fields that exist; an unknown key is a :class:`ConfigError`, so a typo
never silently falls back to a default. Only ``yaml.safe_load`` is used: no tags, no code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from textsieve.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class TeacherConfig:
    """Teacher network (paper section III-A).

    Attributes:
        backbone: ``vgg16`` (the paper's trunk, trained end to end) or ``ppocr`` (frozen PP-OCRv4
            detection trunk run with onnxruntime; only the head trains).
        dim: size D of the region feature space shared with the student.
        pool: adaptive pooling used to form the 3x3 and 5x5 region maps (``max`` or ``avg``).
        per_region_map: one linear map per region (34 maps) instead of one shared map. The paper's
            16.03M parameters are reached with per-region maps and D=64.
        fuse_channels: channels both trunk maps are projected to before they are added, when their
            channel counts differ (ppocr: 96 and 384).
    """

    backbone: str = "vgg16"
    dim: int = 64
    pool: str = "max"
    per_region_map: bool = True
    fuse_channels: int = 256


@dataclass(frozen=True)
class StudentConfig:
    """Student network (paper section III-B): six 3x3 convolutions, BN + ReLU.

    Attributes:
        channels: output channels of the six conv layers.
        strides: stride of each conv layer.
        dim: size D of the shared region feature space (must equal the teacher's).
        pool: adaptive pooling (``max`` or ``avg``).
    """

    channels: tuple[int, ...] = (16, 24, 40, 48, 56, 56)
    strides: tuple[int, ...] = (2, 2, 2, 2, 1, 2)
    dim: int = 64
    pool: str = "max"


@dataclass(frozen=True)
class LabelConfig:
    """Region-label rule (paper section III-D).

    Attributes:
        rule: ``paper`` (coverage >= min_cover) or ``msp`` (MSP-Net: coverage > 0.05 and a box
            taller than half the region inside it).
        min_cover: coverage threshold of the ``paper`` rule.
    """

    rule: str = "paper"
    min_cover: float = 0.01
    msp_cover: float = 0.05
    msp_height: float = 0.5

    def __post_init__(self) -> None:
        if self.rule not in ("paper", "msp"):
            raise ConfigError(f"unknown label rule {self.rule!r} (use 'paper' or 'msp')")
        if not 0.0 < self.min_cover <= 1.0:
            raise ConfigError(f"min_cover must be in (0, 1], got {self.min_cover}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated field type, strictly."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, where) for v in value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # missing required fields
        raise ConfigError(f"{where}: {e}") from None


def replace(cfg: T, overrides: dict[str, Any]) -> T:
    """Return ``cfg`` with ``overrides`` applied (nested dicts for nested dataclasses)."""
    merged = _merge(to_dict(cfg), overrides)
    return from_dict(type(cfg), merged)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    cls: type[T], path: Path | None = None, overrides: dict[str, Any] | None = None
) -> T:
    """Defaults of ``cls``, overridden by a YAML file, then by explicit overrides.

    Args:
        cls: the frozen dataclass type.
        path: optional YAML file; its top level must be a mapping.
        overrides: values given on the command line (``None`` values are ignored).

    Returns:
        The resolved config.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
    if overrides:
        data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    defaults = to_dict(cls()) if _has_defaults(cls) else {}
    return from_dict(cls, _merge(defaults, data), where=str(path) if path else "config")


def _has_defaults(cls: type) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-type dict of a dataclass (tuples become lists, Paths strings) for YAML/checkpoints."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def dump_config(cfg: Any, path: Path) -> None:
    """Write the resolved config as YAML (beside checkpoints, so every run is reproducible)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")


__all__ = [
    "TeacherConfig",
    "StudentConfig",
    "LabelConfig",
    "load_config",
    "from_dict",
    "replace",
    "to_dict",
    "dump_config",
    "field",
]
