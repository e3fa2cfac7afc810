"""fusion.config: defaults, TOML, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.errors import ConfigError
from fusion.config import Config, default_config_path, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


def test_default_toml_is_the_code_default() -> None:
    """configs/default.toml documents the defaults; it must not silently differ from them."""
    assert load_config() == Config()
    assert default_config_path().resolve() == (ROOT / "configs" / "default.toml").resolve()


def test_research_config_loads() -> None:
    cfg = load_config(ROOT / "configs" / "research.toml")
    assert cfg.sentiment.backend == "transformers"


def test_round_trip_and_hash() -> None:
    cfg = load_config(overrides=["segments.max_segment_s=8", "runtime.num_threads=1"])
    assert cfg.segments.max_segment_s == 8.0 and cfg.runtime.num_threads == 1
    again = Config.model_validate(cfg.to_dict())
    assert again == cfg and again.config_hash() == cfg.config_hash()
    assert cfg.config_hash() != Config().config_hash()


def test_overrides_mapping_and_types() -> None:
    cfg = Config().with_overrides({"transcript.enabled": False, "emotion.model": "/models/x"})
    assert cfg.transcript.enabled is False and cfg.emotion.model == "/models/x"
    assert parse_override("a.b=hello world") == ("a.b", "hello world")
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


@pytest.mark.parametrize("override,needle", [
    ("segments.max_segment=8", "segments.max_segment"),
    ("nosuch.key=1", "nosuch"),
    ("segments.max_segment_s=abc", "segments.max_segment_s"),
    ("segments.policy=magic", "segments.policy"),
    ("noequals", "section.key=value"),
])
def test_bad_overrides_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(overrides=[override])


def test_unknown_key_in_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[segments]\nmax_segment_s = 8\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'segments\.bogus'"):
        load_config(p)


def test_wrong_type_in_file(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[runtime]\nnum_threads = "many"\n')
    with pytest.raises(ConfigError, match=r"runtime\.num_threads"):
        load_config(p)


def test_yaml_and_python_tags_are_not_executed(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(p)
    q = tmp_path / "c.toml"
    q.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(q)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "none.toml")
