"""Typed configuration: one dataclass per component, YAML presets as diffs, dotted CLI overrides last.

    cfg = load_config("toy", ["retrieval.topk=5", "rollout.max_turns=2"])

Unknown keys and wrong types fail at load time with the key's full path in the message.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from searche1 import protocol
from searche1.data.toyworld.generator import WorldConfig
from searche1.fileio import atomic_write
from searche1.reward import EMMode

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    pass


@dataclass
class RetrievalConfig:
    method: str = "bm25"
    """Index type: bm25 | dense (`searche1 index` and the demo build it)."""
    index: str = ""
    """Index directory (in-process search) or http(s):// URL of a `searche1 serve` / Search-R1 server
    (`searche1 search` uses it when --index is not given; the rollout engine will too)."""
    topk: int = protocol.DEFAULT_TOPK
    """Documents per query inserted into the <information> block."""
    model: str = "minilm"
    """Dense encoder: `minilm` (bundled offline all-MiniLM-L6-v2), an HF id or path (e5 models get prefixes)."""
    faiss_type: str = "flat"
    """Dense index: flat (exact) | fp16 (exact, half memory) | ivf | hnsw (approximate)."""
    timeout: float = 30.0
    """HTTP client: seconds per request."""
    retries: int = 3
    """HTTP client: retries (exponential backoff with jitter) before giving up."""
    on_failure: typing.Literal["stop", "skip"] = "stop"
    """When the retriever still fails after its retries: stop (the run ends with the error; GRPO resumes from its
    last checkpoint with --resume) or skip (that turn's searching samples end with finish reason `error`: counted in
    the metrics, left out of the GRPO and OFSD losses, scored 0 in evaluations)."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    """Bind address; loopback unless told otherwise."""
    port: int = 8000
    max_queries: int = 512
    """Queries per request."""
    max_query_chars: int = 4096
    max_body_bytes: int = 4 * 1024 * 1024


@dataclass
class RolloutConfig:
    max_turns: int = protocol.DEFAULT_MAX_TURNS
    """Searches allowed per trajectory; then one last turn with search disabled."""
    max_obs_length: int = protocol.DEFAULT_MAX_OBS_LENGTH
    """Observation tokens kept per <information> block."""
    max_response_length: int = 500
    """Generated tokens per turn."""
    em_mode: EMMode = EMMode.STRICT
    """strict (last <answer> of the response) | searchr1 (prompt + response, >= 2 matches)."""
    max_start_length: int = 2048
    """Prompt tokens allowed for a question; a longer one ends at once with finish reason `budget`."""
    max_prompt_length: int = 4096
    """Context budget: prompt + response tokens; a sample that would pass it ends with finish reason `budget`."""
    max_query_chars: int = 1024
    """A longer <search> query is cut to this many characters before it is sent (and recorded so)."""
    n_samples: int = 5
    """G: samples per question (the GRPO group size)."""
    temperature: float = 1.0
    top_p: float = 1.0
    """Nucleus sampling; Search-R1 trained with 0.95 (the searchr1 preset)."""
    top_k: int = 0
    """0 = off."""
    backend: typing.Literal["hf", "vllm"] = "hf"
    """Generation backend: hf (transformers; CPU and GPU) or vllm (GPU; pip install 'searche1[vllm]'). Training
    always scores with the HF model; vLLM holds a copy of the weights, refreshed after every update."""
    vllm_gpu_memory_utilization: float = 0.4
    """vLLM: fraction of the GPU's memory its engine may take (the rest is the trainer's)."""
    vllm_max_model_len: int = 0
    """vLLM: longest sequence in tokens (0 = max_prompt_length + max_response_length)."""


@dataclass
class GRPOConfig:
    """Vanilla GRPO (Search-R1's, verl semantics). Defaults are sized for the toy world on 2 CPU cores; the searchr1
    preset sets the paper's numbers (docs/protocol.md)."""

    model: str = "toy-base"
    """Policy to start from: an HF folder, toy-base (shipped), or a hub id where a network exists."""
    train_data: list[str] = field(default_factory=list)
    """QA files (.jsonl/.parquet) or directories to train on, searched through retrieval.index; empty = the toy
    world's train split (world.*) with an in-process BM25 index over its corpus."""
    steps: int = 100
    """Training steps (one batch of prompts each)."""
    prompts_per_step: int = 16
    """Questions per step, each sampled rollout.n_samples times (Search-R1: train_batch_size 512)."""
    mini_batch_prompts: int = 16
    """Prompts per optimizer update, as verl counts ppo_mini_batch_size (x n_samples trajectories); a step makes
    prompts_per_step / mini_batch_prompts updates (Search-R1: 256, so 2)."""
    micro_batch: int = 16
    """Trajectories per forward/backward in one process (gradient accumulation inside a mini-batch)."""
    lr: float = 1e-4
    warmup_ratio: float = 0.0
    """Fraction of the steps with a linear warmup (Search-R1: 0.285)."""
    schedule: typing.Literal["constant", "cosine"] = "constant"
    """After warmup: constant (Search-R1, verl's default) or cosine to 10%."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_low: float = 0.2
    clip_high: float | None = None
    """DAPO's clip-higher; None = clip_low (symmetric, as Search-R1)."""
    kl_coef: float = 0.001
    kl_kind: typing.Literal["k1", "k2", "k3", "low_var_kl"] = "low_var_kl"
    entropy_coef: float = 0.0
    """Search-R1 used 0.001 (the searchr1 preset sets it)."""
    aggregation: typing.Literal["token-mean", "seq-mean-token-mean"] = "token-mean"
    scale_by_std: bool = True
    """Divide advantages by the group's std (GRPO); false = Dr. GRPO's mean-only centring."""
    lora_rank: int = 0
    """0 = full fine-tuning (the reference is a frozen copy); > 0 = a LoRA adapter (the reference is the model
    with the adapter disabled: no second copy)."""
    lora_alpha: int = 32
    gradient_checkpointing: bool = False
    """Recompute activations in backward (transformers' gradient checkpointing): far less memory per micro-batch
    for ~30% more compute; Search-R1 trained with it on."""
    save_every: int = 50
    """Steps between checkpoints (and one at the end)."""


@dataclass
class OFSDConfig:
    """Offline self-distillation (docs/ofsd.md, "The method"). The paper leaves rounds, steps, LoRA rank,
    learning rate, epochs and the teacher's view of retrieved text open: the defaults below are choices, sized for
    the toy world on 2 CPU cores, and every run records them."""

    model: str = ""
    """Policy to distil (the post-GRPO weights); empty = the latest GRPO checkpoint of the same run (evolve)."""
    pool_questions: int = 200
    """Training questions sampled into the rollout pool (0 = all)."""
    n_samples: int = 5
    """Rollouts per pool question (G of the pool; siblings to mine pairs from)."""
    student: typing.Literal["kl", "longest", "lexical", "random", "all"] = "kl"
    """Student sibling: highest mean teacher-student KL (default), longest, least similar actions, random, all."""
    reference: typing.Literal["shortest", "any"] = "shortest"
    """Reference: the shortest correct sibling (default) or any correct one (ablation)."""
    with_retrieved: bool = False
    """Whether the teacher's privileged block includes the reference's retrieved documents."""
    divergence: typing.Literal["forward", "reverse", "jsd"] = "forward"
    tau_clip: float | None = 10.0
    """Pointwise clip of each token's divergence; null = no clip."""
    top_k: int = 0
    """> 0: the teacher's distribution cut to its k best tokens (approximation, ablation)."""
    jsd_beta: float = 0.5
    chunk: int = 256
    """Sequence positions per chunk of logits in the loss (memory O(chunk x vocab))."""
    lora_rank: int = 16
    lora_alpha: int = 32
    lr: float = 1e-4
    epochs: int = 1
    """Passes over the mined pairs."""
    pairs_per_step: int = 8
    """Pairs per optimizer update."""
    grad_clip: float = 1.0


@dataclass
class EvolveConfig:
    """Self-evolution: rounds of GRPO -> OFSD, every phase checkpointed and evaluated (`searche1 train`)."""

    rounds: int = 2
    """Rounds of GRPO -> OFSD (the paper's count is unknown; gains per round are recorded)."""
    grpo_steps: int = 0
    """GRPO steps per round (0 = grpo.steps)."""
    mode: typing.Literal["both", "grpo-only", "ofsd-only"] = "both"
    """both = Search-E1; grpo-only = the baseline at the same rollout budget (OFSD's pool rollouts become GRPO
    steps); ofsd-only = the other arm."""
    lr_schedule: typing.Literal["continuous", "per_round"] = "continuous"
    """GRPO's learning-rate schedule (grpo.warmup_ratio, grpo.schedule) across rounds: continuous = the rounds'
    GRPO steps together are the schedule of one run (warm-up once, at the start of round 1); per_round = each
    round's GRPO phase restarts it. Either way round n continues the question order and sampling seeds where round
    n-1 stopped, and each GRPO phase starts a fresh optimizer state (the OFSD phase between changed the weights)."""
    eval_data: list[str] = field(default_factory=list)
    """QA files or directories to evaluate each phase on (through retrieval.index); empty = the toy world's seven
    test sets."""
    eval_limit: int = 0
    """Questions per test set (0 = all)."""
    eval_batch: int = 128
    """Questions in flight during evaluation."""


@dataclass
class Config:
    world: WorldConfig = field(default_factory=WorldConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    ofsd: OFSDConfig = field(default_factory=OFSDConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    seed: int = 0
    """Seed of the run (one `seed_everything` call at start)."""
    report_to: list[str] = field(default_factory=list)
    """Mirror training metrics to `tensorboard` (RUN/tensorboard/) and/or `wandb`, besides RUN/metrics.jsonl."""

    def __post_init__(self):
        validate(self)


def validate(cfg: Config) -> None:
    """Cross-field checks, each naming the fix. Section dataclasses with their own checks run them again, since
    overrides are applied field by field after construction."""
    try:
        cfg.world.__post_init__()
    except ValueError as e:
        raise ConfigError(f"world: {e}") from None
    if cfg.retrieval.method not in ("bm25", "dense"):
        raise ConfigError(f"retrieval.method must be bm25 or dense, got {cfg.retrieval.method!r}")
    if not 1 <= cfg.retrieval.topk <= 100:
        raise ConfigError(f"retrieval.topk must be in 1..100, got {cfg.retrieval.topk}")
    if cfg.retrieval.faiss_type not in ("flat", "fp16", "ivf", "hnsw"):
        raise ConfigError(f"retrieval.faiss_type must be flat, fp16, ivf or hnsw, got {cfg.retrieval.faiss_type!r}")
    if cfg.retrieval.timeout <= 0 or cfg.retrieval.retries < 0:
        raise ConfigError("retrieval.timeout must be > 0 and retrieval.retries >= 0")
    if not 0 <= cfg.server.port <= 65535:
        raise ConfigError(f"server.port must be in 0..65535, got {cfg.server.port}")
    if min(cfg.server.max_queries, cfg.server.max_query_chars, cfg.server.max_body_bytes) < 1:
        raise ConfigError("server.max_queries, server.max_query_chars and server.max_body_bytes must be >= 1")
    if cfg.rollout.max_turns < 0:
        raise ConfigError(f"rollout.max_turns must be >= 0, got {cfg.rollout.max_turns}")
    r = cfg.rollout
    if min(r.max_obs_length, r.max_response_length, r.max_start_length, r.max_prompt_length, r.n_samples,
           r.max_query_chars) < 1:
        raise ConfigError("rollout.max_obs_length, max_response_length, max_start_length, max_prompt_length, "
                          "n_samples and max_query_chars must be >= 1")
    if r.temperature <= 0 or not 0 < r.top_p <= 1 or r.top_k < 0:
        raise ConfigError("rollout.temperature must be > 0, rollout.top_p in (0, 1], rollout.top_k >= 0")
    if not 0 < r.vllm_gpu_memory_utilization < 1 or r.vllm_max_model_len < 0:
        raise ConfigError("rollout.vllm_gpu_memory_utilization must be in (0, 1), rollout.vllm_max_model_len >= 0")
    g = cfg.grpo
    if min(g.steps, g.prompts_per_step, g.mini_batch_prompts, g.micro_batch, g.save_every) < 1:
        raise ConfigError("grpo.steps, prompts_per_step, mini_batch_prompts, micro_batch and save_every must be >= 1")
    if g.prompts_per_step % g.mini_batch_prompts:
        raise ConfigError(f"grpo.prompts_per_step ({g.prompts_per_step}) must be a multiple of "
                          f"grpo.mini_batch_prompts ({g.mini_batch_prompts})")
    if g.lr <= 0 or not 0 <= g.warmup_ratio < 1 or g.grad_clip <= 0 or g.clip_low <= 0 or g.lora_rank < 0:
        raise ConfigError("grpo.lr, grad_clip and clip_low must be > 0, warmup_ratio in [0, 1), lora_rank >= 0")
    if g.clip_high is not None and g.clip_high <= 0:
        raise ConfigError(f"grpo.clip_high must be > 0 or null (= clip_low), got {g.clip_high}")
    if min(g.kl_coef, g.entropy_coef, g.weight_decay) < 0:
        raise ConfigError("grpo.kl_coef, entropy_coef and weight_decay must be >= 0")
    o = cfg.ofsd
    if min(o.n_samples, o.chunk, o.lora_rank, o.epochs, o.pairs_per_step) < 1 or o.pool_questions < 0:
        raise ConfigError("ofsd.n_samples, chunk, lora_rank, epochs and pairs_per_step must be >= 1, "
                          "ofsd.pool_questions >= 0")
    if o.n_samples < 2:
        raise ConfigError("ofsd.n_samples must be >= 2: a pair is two siblings of one question")
    if o.lr <= 0 or o.grad_clip <= 0 or (o.tau_clip is not None and o.tau_clip <= 0) or o.top_k < 0:
        raise ConfigError("ofsd.lr and grad_clip must be > 0, ofsd.tau_clip > 0 or null, ofsd.top_k >= 0")
    if not 0 < o.jsd_beta < 1:
        raise ConfigError(f"ofsd.jsd_beta must be in (0, 1), got {o.jsd_beta}")
    if o.top_k and o.divergence == "reverse":
        raise ConfigError("ofsd.top_k with ofsd.divergence=reverse: the reverse KL is infinite outside the teacher's "
                          "top k; use forward or jsd")
    e = cfg.evolve
    if e.rounds < 1 or min(e.grpo_steps, e.eval_limit) < 0 or e.eval_batch < 1:
        raise ConfigError("evolve.rounds and eval_batch must be >= 1, evolve.grpo_steps and eval_limit >= 0")
    unknown = sorted(set(cfg.report_to) - {"tensorboard", "wandb"})
    if unknown:
        raise ConfigError(f"report_to: unknown {unknown}; choose from tensorboard, wandb")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str) -> Any:
    """Check `value` against the annotation `tp` (int accepted for float, strings for enums)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{key}: must be one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _apply(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of its fields, got {value!r}")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_overrides(overrides: list[str]) -> dict:
    """["a.b=1", "c=x"] -> {"a": {"b": 1}, "c": "x"}; values parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. retrieval.topk=5)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of "
                                  f"{'.'.join(parts[:i + 1])!r}")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override {item!r} conflicts with an earlier override inside {key.strip()!r}")
        node[parts[-1]] = value
    return tree


def preset_path(preset: str | os.PathLike) -> Path:
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"preset file {p} does not exist")
        return p
    candidate = PRESET_DIR / f"{preset}.yaml"
    if not candidate.is_file():
        names = sorted(x.stem for x in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {str(preset)!r}; available: {', '.join(names)} (or a path to a .yaml)")
    return candidate


def load_config(preset: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config.__new__(Config)  # defaults without validation; validated once complete
    for f in dataclasses.fields(Config):
        setattr(cfg, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    if preset is not None:
        path = preset_path(preset)
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a preset must be a mapping of config sections")
        try:
            _apply(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    _apply(cfg, parse_overrides(overrides or []))
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply dotted overrides to a loaded config in place (validated again); returns it."""
    _apply(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    def plain(v):
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """The resolved config of a run, saved beside its outputs."""
    with atomic_write(path) as f:
        f.write(dump_config(cfg))
