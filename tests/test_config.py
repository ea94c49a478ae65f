"""Typed config: presets as diffs, dotted overrides, unknown keys and wrong types rejected with the key path."""

import pytest
import yaml

from searche1.config import Config, ConfigError, dump_config, load_config, parse_overrides, save_config
from searche1.reward import EMMode


def test_defaults_and_toy_preset():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert (cfg.retrieval.topk, cfg.rollout.max_turns, cfg.rollout.max_obs_length) == (3, 4, 500)
    assert cfg.rollout.em_mode is EMMode.STRICT
    toy = load_config("toy")
    assert toy.retrieval.method == "bm25"


def test_searchr1_preset():
    cfg = load_config("searchr1")
    assert cfg.retrieval.method == "dense" and cfg.retrieval.model == "intfloat/e5-base-v2"


def test_overrides_go_last_and_are_typed():
    cfg = load_config("toy", ["retrieval.topk=5", "rollout.em_mode=searchr1", "retrieval.timeout=2",
                              "world.seed=7", "retrieval.index=http://h:1"])
    assert cfg.retrieval.topk == 5 and cfg.rollout.em_mode is EMMode.SEARCHR1
    assert cfg.retrieval.timeout == 2.0 and isinstance(cfg.retrieval.timeout, float)
    assert cfg.world.seed == 7 and cfg.retrieval.index == "http://h:1"


@pytest.mark.parametrize("override,message", [
    ("retrieval.topkk=5", "unknown config key 'retrieval.topkk'"),
    ("nosection.x=1", "unknown config key 'nosection'"),
    ("retrieval.topk=three", "retrieval.topk: expected int"),
    ("retrieval.topk=true", "retrieval.topk: expected an integer"),
    ("rollout.em_mode=fuzzy", "rollout.em_mode: must be one of"),
    ("retrieval=5", "retrieval: expected a mapping"),
    ("retrieval.topk", "must look like key=value"),
    ("retrieval.topk=0", "retrieval.topk must be in 1..100"),
    ("retrieval.method=tfidf", "retrieval.method must be bm25 or dense"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config("toy", [override])


def test_preset_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  topk: 3\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'retrieval.colour'"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: .*toy"):
        load_config("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))


def test_resolved_config_roundtrips(tmp_path):
    cfg = load_config("toy", ["retrieval.topk=4"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert dump_config(again) == dump_config(cfg)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["retrieval"]["topk"] == 4


def test_parse_overrides_tree():
    assert parse_overrides(["a.b=1", "a.c=x y", "d=[1, 2]", "e="]) == {"a": {"b": 1, "c": "x y"}, "d": [1, 2],
                                                                       "e": ""}


def test_world_section_is_validated_after_overrides():
    with pytest.raises(ConfigError, match="world: n_people \\+ n_cities"):
        load_config("toy", ["world.n_people=290"])
    with pytest.raises(ConfigError, match="world: name_pool must be"):
        load_config("toy", ["world.name_pool=mine"])
