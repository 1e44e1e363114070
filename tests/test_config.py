from __future__ import annotations

from pathlib import Path

import pytest

from textsieve.config import LabelConfig, StudentConfig, TeacherConfig, dump_config, load_config
from textsieve.errors import ConfigError


def test_yaml_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("dim: 32\nchannels: [8, 8, 8, 8, 16, 16]\n")
    cfg = load_config(StudentConfig, cfg_file, {"pool": "avg", "dim": None})
    assert cfg.dim == 32 and cfg.channels == (8, 8, 8, 8, 16, 16) and cfg.pool == "avg"
    dump_config(cfg, tmp_path / "out.yaml")
    assert load_config(StudentConfig, tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize(
    "text, match",
    [
        ("dimm: 3\n", "unknown key"),
        ("dim: three\n", "expected int"),
        ("- a\n", "mapping"),
        ("dim: [1\n", "invalid YAML"),
        ("backbone: !!python/object:os.system x\n", "invalid YAML"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(TeacherConfig, p)


def test_missing_file_and_label_rule() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(TeacherConfig, Path("/nonexistent/cfg.yaml"))
    with pytest.raises(ConfigError, match="rule"):
        LabelConfig(rule="loose")
