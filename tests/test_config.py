"""Typed config: presets as diffs, dotted overrides, unknown keys and wrong types rejected with the key path."""

import os
import re

import pytest
import yaml

from searche1.config import PRESET_DIR, Config, ConfigError, dump_config, load_config, parse_overrides, save_config
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
    g = cfg.grpo  # Search-R1's GRPO numbers (docs/protocol.md)
    assert (g.lr, g.warmup_ratio, g.prompts_per_step, g.mini_batch_prompts, cfg.rollout.n_samples) == \
        (1e-6, 0.285, 512, 256, 5)
    assert (g.clip_low, g.clip_high, g.kl_coef, g.kl_kind, g.entropy_coef) == (0.2, None, 0.001, "low_var_kl", 0.001)
    assert (cfg.rollout.temperature, cfg.rollout.top_p, g.steps) == (1.0, 0.95, 1005)


@pytest.mark.parametrize("preset", ["searchr1", "qwen2.5-3b-search-e1", "qwen2.5-7b-search-e1"])
def test_paper_presets_pin_search_r1s_numbers(preset):
    cfg = load_config(preset)
    g, r = cfg.grpo, cfg.rollout
    assert (g.lr, g.warmup_ratio, g.prompts_per_step, g.mini_batch_prompts, r.n_samples) == (1e-6, 0.285, 512, 256, 5)
    assert (g.clip_low, g.clip_high, g.kl_coef, g.kl_kind, g.entropy_coef) == (0.2, None, 0.001, "low_var_kl", 0.001)
    assert (r.temperature, r.top_p, r.max_turns, r.max_obs_length, r.max_response_length, cfg.retrieval.topk) == \
        (1.0, 0.95, 4, 500, 500, 3)
    assert (r.max_start_length, r.max_prompt_length, cfg.retrieval.model) == (2048, 4096, "intfloat/e5-base-v2")


@pytest.mark.parametrize("preset, model", [("qwen2.5-3b-search-e1", "Qwen/Qwen2.5-3B"),
                                           ("qwen2.5-7b-search-e1", "Qwen/Qwen2.5-7B")])
def test_search_e1_presets_use_vllm_design_md_ofsd_and_the_searchr1_files(preset, model):
    from searche1.config import OFSDConfig

    cfg = load_config(preset)
    assert cfg.grpo.model == model and cfg.rollout.backend == "vllm" and cfg.grpo.gradient_checkpointing
    o, defaults = cfg.ofsd, OFSDConfig()  # the OFSD defaults, except the pool size (a stated choice)
    assert (o.student, o.reference, o.divergence, o.tau_clip, o.lr, o.epochs, o.lora_rank) == \
        (defaults.student, defaults.reference, defaults.divergence, 10.0, defaults.lr, defaults.epochs,
         defaults.lora_rank) == ("kl", "shortest", "forward", 10.0, 1e-4, 1, 16)
    assert cfg.evolve.mode == "both" and cfg.evolve.rounds * cfg.evolve.grpo_steps <= cfg.grpo.steps
    assert cfg.data.train == ["/data/nq_hotpotqa_train/train.parquet"]
    assert cfg.data.eval == ["/data/nq_hotpotqa_train/test.parquet"]
    assert cfg.retrieval.index == "http://127.0.0.1:8000"
    text = PRESET_DIR.joinpath(f"{preset}.yaml").read_text()
    assert "configs/accelerate/zero2_8gpu.yaml" in text and "CHOICE" in text
    assert (PRESET_DIR / "accelerate" / "zero2_8gpu.yaml").is_file()


def test_smollm2_cpu_preset():
    cfg = load_config("smollm2-135m-cpu")
    assert cfg.grpo.model == "smollm2-135m-searcher" and cfg.rollout.backend == "hf"
    assert cfg.evolve.rounds == 1 and cfg.evolve.grpo_steps <= 4 and not cfg.data.train


def test_grpo_section_checks():
    assert load_config("toy").grpo.model == "toy-base"
    with pytest.raises(ConfigError, match="multiple of grpo.mini_batch_prompts"):
        load_config("toy", ["grpo.prompts_per_step=12", "grpo.mini_batch_prompts=8"])
    with pytest.raises(ConfigError, match="grpo.kl_kind: must be one of"):
        load_config("toy", ["grpo.kl_kind=k9"])
    with pytest.raises(ConfigError, match="clip_high"):
        load_config("toy", ["grpo.clip_high=-1"])
    assert load_config("toy", ["grpo.clip_high=0.28"]).grpo.clip_high == 0.28


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
    ("evolve.mode=grpo", "got 'grpo' (renamed to 'grpo-fixed')"),
    ("retrieval=5", "retrieval: expected a mapping"),
    ("retrieval.topk", "must look like key=value"),
    ("retrieval.topk=0", "retrieval.topk must be in 1..100"),
    ("retrieval.method=tfidf", "retrieval.method must be bm25 or dense"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
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


def test_float_forms_and_conflicts():
    assert load_config("toy", ["retrieval.timeout=1e1"]).retrieval.timeout == 10.0
    with pytest.raises(ConfigError, match="expected a number"):
        load_config("toy", ["retrieval.timeout=soon"])
    with pytest.raises(ConfigError, match="conflicts with an earlier override"):
        load_config("toy", ["retrieval=5", "retrieval.topk=3"])
    with pytest.raises(ConfigError, match="conflicts with an earlier override"):
        load_config("toy", ["retrieval.topk=3", "retrieval=5"])


@pytest.mark.parametrize("override,message", [
    ("retrieval.faiss_type=lsh", "faiss_type must be"),
    ("retrieval.retries=-1", "retrieval.retries must be >= 0, got -1"),
    ("retrieval.timeout=0", "timeout must be > 0"),
    ("retrieval.timeout=nan", "retrieval.timeout must be > 0 and finite (seconds), got nan"),
    ("retrieval.timeout=.inf", "retrieval.timeout must be > 0 and finite (seconds), got inf"),
    ("server.max_queries=0", "server.max_queries must be >= 1, got 0"),
    ("grpo.grad_clip=0", "grpo.grad_clip must be > 0, got 0.0"),
    ("grpo.lr=.nan", "grpo.lr must be > 0, got nan"),
    ("ofsd.epochs=0", "ofsd.epochs must be >= 1, got 0"),
    ("evolve.eval_limit=-1", "evolve.eval_limit must be >= 0"),
    ("server.port=99999", "server.port must be in"),
])
def test_load_time_validation(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("toy", [override])


def test_threads_respect_user_setting(monkeypatch):
    import os

    from searche1.runtime import configure_threads

    for var in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):  # restored after the test
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads() == 1
    assert configure_threads(2) == 2
    configure_threads(1)  # back to the suite's one thread


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("retrieval:\n  topk: 3\n  method: [bm25\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: not valid YAML"):
        load_config(str(bad))


def test_sections_check_themselves():
    from searche1.config import GRPOConfig, RetrievalConfig

    with pytest.raises(ConfigError, match="retrieval.timeout must be > 0 and finite"):
        RetrievalConfig(timeout=float("inf"))
    with pytest.raises(ConfigError, match=r"grpo.prompts_per_step \(12\) must be a multiple"):
        GRPOConfig(prompts_per_step=12, mini_batch_prompts=8)


def test_a_moved_key_names_its_new_place():
    with pytest.raises(ConfigError, match=re.escape("'grpo.train_data' (grpo.train_data is now data.train)")):
        load_config("toy", ["grpo.train_data=[a.jsonl]"])
    assert load_config("toy", ["data.train=[a.jsonl]", "data.eval=[b]"]).data.eval == ["b"]


def test_a_long_run_keeps_the_code_it_started_with(tmp_path):
    """import_package_now at a run's start: a module the run first uses hours later comes from the source as it was
    at the start, even when the source was broken in between (modules import each other lazily)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import searche1

    shutil.copytree(Path(searche1.__file__).parent, tmp_path / "searche1", ignore=shutil.ignore_patterns("assets"))
    script = ("import sys\nfrom searche1.runtime import import_package_now\nimport_package_now()\n"
              "open(sys.argv[1], 'w').write('raise ImportError(\"edited mid-run\")')\n"
              "from searche1.train.ofsd import train_ofsd\nfrom searche1.train.pairs import answered_samples\n"
              "print('server' if 'searche1.retrieval.server' in sys.modules else 'kept')")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "searche1/train/pairs.py")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "kept"  # the retrieval server (FastAPI) is not loaded by a training run
