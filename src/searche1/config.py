"""Typed configuration: one dataclass per component, YAML presets as diffs, dotted CLI overrides last.

    cfg = load_config("toy", ["retrieval.topk=5", "rollout.max_turns=2"])

Unknown keys and wrong types fail at load time with the key's full path in the message.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from searche1 import protocol
from searche1.config_fields import (
    ConfigError,
    apply_mapping,
    at_least,
    non_negative,
    parse_overrides,
    positive,
    require,
    require_each,
    to_dict,
)
from searche1.data.toyworld.generator import WorldConfig
from searche1.fileio import atomic_write
from searche1.reward import EMMode

PRESET_DIR = Path(__file__).parent / "configs"


class Section:
    """A config section checks its own fields (at construction, and again after a preset or overrides set them)."""

    def __post_init__(self):
        self.check()

    def check(self, at: str = "") -> None:
        pass


@dataclass
class DataConfig(Section):
    """Where the questions come from: GRPO's prompts and OFSD's pool read `train`, every evaluation phase `eval`."""

    train: list[str] = field(default_factory=list)
    """QA files (.jsonl/.parquet) or directories to train on, searched through retrieval.index; empty = the toy
    world's train split (world.*) with an in-process BM25 index over its corpus."""
    eval: list[str] = field(default_factory=list)
    """QA files or directories to evaluate each phase on (through retrieval.index); empty = the toy world's seven
    test sets."""


@dataclass
class RetrievalConfig(Section):
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
    max_failed_share: float = 0.1
    """With on_failure=skip: when more than this share of a GRPO step's, an OFSD pool's or an evaluation's samples
    lost their search, the run stops with the error (exit 2) instead of passing the retriever's failures off as
    the model's; `searche1 eval --max-failed-share` overrides it."""


    def check(self, at: str = "retrieval") -> None:
        require(self.method in ("bm25", "dense"), f"{at}.method", "bm25 or dense", self.method)
        require(1 <= self.topk <= 100, f"{at}.topk", "in 1..100", self.topk)
        require(self.faiss_type in ("flat", "fp16", "ivf", "hnsw"), f"{at}.faiss_type", "flat, fp16, ivf or hnsw",
                self.faiss_type)
        require(positive(self.timeout), f"{at}.timeout", "> 0 and finite (seconds)", self.timeout)
        require(self.retries >= 0, f"{at}.retries", ">= 0", self.retries)
        require(0 <= self.max_failed_share <= 1, f"{at}.max_failed_share", "in [0, 1]", self.max_failed_share)

@dataclass
class ServerConfig(Section):
    host: str = "127.0.0.1"
    """Bind address; loopback unless told otherwise."""
    port: int = 8000
    max_queries: int = 512
    """Queries per request."""
    max_query_chars: int = 4096
    max_body_bytes: int = 4 * 1024 * 1024


    def check(self, at: str = "server") -> None:
        require(0 <= self.port <= 65535, f"{at}.port", "in 0..65535", self.port)
        require_each(self, at, "max_queries max_query_chars max_body_bytes", at_least(1), ">= 1")

@dataclass
class RolloutConfig(Section):
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
    """vLLM: longest sequence in tokens (0 = the longest the engine lets through: max_prompt_length, or
    max_start_length + max_response_length if larger)."""


    def check(self, at: str = "rollout") -> None:
        require(self.max_turns >= 0, f"{at}.max_turns", ">= 0", self.max_turns)
        require_each(self, at, "max_obs_length max_response_length max_start_length max_prompt_length n_samples "
                     "max_query_chars", at_least(1), ">= 1")
        require(positive(self.temperature), f"{at}.temperature", "> 0", self.temperature)
        require(0 < self.top_p <= 1, f"{at}.top_p", "in (0, 1]", self.top_p)
        require(self.top_k >= 0, f"{at}.top_k", ">= 0 (0 = off)", self.top_k)
        require(0 < self.vllm_gpu_memory_utilization < 1, f"{at}.vllm_gpu_memory_utilization", "in (0, 1)",
                self.vllm_gpu_memory_utilization)
        require(self.vllm_max_model_len >= 0, f"{at}.vllm_max_model_len", ">= 0", self.vllm_max_model_len)

@dataclass
class GRPOConfig(Section):
    """Vanilla GRPO (Search-R1's, verl semantics). Defaults are sized for the toy world on 2 CPU cores; the searchr1
    preset sets the paper's numbers (docs/protocol.md)."""

    model: str = "toy-base"
    """Policy to start from: an HF folder, toy-base (shipped), or a hub id where a network exists."""
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


    def check(self, at: str = "grpo") -> None:
        require_each(self, at, "steps prompts_per_step mini_batch_prompts micro_batch save_every", at_least(1), ">= 1")
        if self.prompts_per_step % self.mini_batch_prompts:
            raise ConfigError(f"{at}.prompts_per_step ({self.prompts_per_step}) must be a multiple of "
                              f"{at}.mini_batch_prompts ({self.mini_batch_prompts})")
        require_each(self, at, "lr grad_clip clip_low", positive, "> 0")
        require(self.clip_high is None or positive(self.clip_high), f"{at}.clip_high", "> 0 or null (= clip_low)",
                self.clip_high)
        require(0 <= self.warmup_ratio < 1, f"{at}.warmup_ratio", "in [0, 1)", self.warmup_ratio)
        require_each(self, at, "kl_coef entropy_coef weight_decay", non_negative, ">= 0")
        require(self.lora_rank >= 0, f"{at}.lora_rank", ">= 0 (0 = full fine-tuning)", self.lora_rank)

@dataclass
class OFSDConfig(Section):
    """Offline self-distillation (docs/ofsd.md, "The method"). The paper leaves rounds, steps, LoRA rank,
    learning rate, epochs and the teacher's view of retrieved text open: the defaults below are choices, sized for
    the toy world on 2 CPU cores, and every run records them."""

    model: str = ""
    """Policy to distil (the post-GRPO weights); empty = the latest GRPO checkpoint of the same run (evolve)."""
    pool_questions: int = 200
    """Training questions sampled into the rollout pool (0 = all)."""
    n_samples: int = 5
    """Rollouts per pool question (G of the pool; siblings to mine pairs from)."""
    student: typing.Literal["kl", "longest", "lexical", "random", "all", "failed"] = "kl"
    """Student sibling: highest mean teacher-student KL (default), longest, least similar actions, random, all (every
    other sibling), failed (every wrong sibling)."""
    reference: typing.Literal["shortest", "any", "longest", "first"] = "shortest"
    """Reference: the shortest correct sibling (default); for the ablations any correct one, the longest, or the first
    by sample index (SDPO's choice)."""
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


    def check(self, at: str = "ofsd") -> None:
        require_each(self, at, "chunk lora_rank epochs pairs_per_step", at_least(1), ">= 1")
        require(self.n_samples >= 2, f"{at}.n_samples", ">= 2 (a pair is two siblings of one question)",
                self.n_samples)
        require(self.pool_questions >= 0, f"{at}.pool_questions", ">= 0 (0 = all)", self.pool_questions)
        require_each(self, at, "lr grad_clip", positive, "> 0")
        require(self.tau_clip is None or positive(self.tau_clip), f"{at}.tau_clip", "> 0 or null", self.tau_clip)
        require(self.top_k >= 0, f"{at}.top_k", ">= 0 (0 = the full distribution)", self.top_k)
        require(0 < self.jsd_beta < 1, f"{at}.jsd_beta", "in (0, 1)", self.jsd_beta)
        if self.top_k and self.divergence == "reverse":
            raise ConfigError(f"{at}.top_k with {at}.divergence=reverse: the reverse KL is infinite outside the "
                              "teacher's top k; use forward or jsd")

@dataclass
class EvolveConfig(Section):
    """Self-evolution: rounds of GRPO -> OFSD, every phase checkpointed and evaluated (`searche1 train`)."""

    rounds: int = 2
    """Rounds of GRPO -> OFSD (the paper's count is unknown; gains per round are recorded)."""
    grpo_steps: int = 0
    """GRPO steps per round (0 = grpo.steps)."""
    mode: typing.Literal["both", "grpo-only", "grpo-fixed", "ofsd-only"] = "both"
    """both = Search-E1; grpo-only = the baseline at the same rollout budget (OFSD's pool rollouts become GRPO
    steps); grpo-fixed = GRPO phases of exactly grpo_steps, nothing added (`ablate`'s same-wall-clock arm sets
    them); ofsd-only = the other arm."""
    lr_schedule: typing.Literal["continuous", "per_round"] = "continuous"
    """GRPO's learning-rate schedule (grpo.warmup_ratio, grpo.schedule) across rounds: continuous = the rounds'
    GRPO steps together are the schedule of one run (warm-up once, at the start of round 1); per_round = each
    round's GRPO phase restarts it. Either way round n continues the question order and sampling seeds where round
    n-1 stopped, and each GRPO phase starts a fresh optimizer state (the OFSD phase between changed the weights)."""
    eval_limit: int = 0
    """Questions per test set (0 = all)."""
    eval_batch: int = 128
    """Questions in flight during evaluation."""


    def check(self, at: str = "evolve") -> None:
        require_each(self, at, "rounds eval_batch", at_least(1), ">= 1")
        require_each(self, at, "grpo_steps eval_limit", at_least(0), ">= 0 (0 = the default)")

@dataclass
class Config:
    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataConfig = field(default_factory=DataConfig)
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
    """Every section's own checks, run once the whole config is set (overrides set fields one by one)."""
    try:
        cfg.world.__post_init__()
    except ValueError as e:
        raise ConfigError(f"world: {e}") from None
    for name in ("data", "retrieval", "server", "rollout", "grpo", "ofsd", "evolve"):
        getattr(cfg, name).check(name)
    unknown = sorted(set(cfg.report_to) - {"tensorboard", "wandb"})
    if unknown:
        raise ConfigError(f"report_to: unknown {unknown}; choose from tensorboard, wandb")


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


def read_preset(path: Path) -> Any:
    """A preset's YAML; a syntax error names the file and line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the preset: {e}") from None


def load_config(preset: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config.__new__(Config)  # defaults without validation; validated once complete
    for f in dataclasses.fields(Config):
        setattr(cfg, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    if preset is not None:
        path = preset_path(preset)
        data = read_preset(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a preset must be a mapping of config sections")
        try:
            apply_mapping(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    apply_mapping(cfg, parse_overrides(overrides or []))
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply dotted overrides to a loaded config in place (validated again); returns it."""
    apply_mapping(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """The resolved config of a run, saved beside its outputs."""
    with atomic_write(path) as f:
        f.write(dump_config(cfg))
