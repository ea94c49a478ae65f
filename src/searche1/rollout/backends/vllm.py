"""vLLM backend (GPU, optional extra `pip install searche1[vllm]`): the same interface as the HF backend.

vLLM owns its KV cache; with prefix caching on, re-submitting a row's whole token sequence each turn reuses the
cached prefix, so an observation costs only its own tokens, as in the HF backend. Token ids go in as ids
(`TokensPrompt`) and come back as ids: nothing the model sampled is decoded and re-encoded.

Log-probs: vLLM is asked for the sampled token's log-prob after temperature ("processed_logprobs"). With top-p or
top-k active vLLM reports them after truncation too, which differs from the HF backend (before truncation); the
trainer recomputes old log-probs when it needs exact ones.

After a training phase, `load_weights` pushes the new weights into the running engine, or `set_lora` points
generation at a saved LoRA adapter.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch

from searche1.protocol import STOP_STRINGS
from searche1.rollout.backends.base import Generators, SamplingParams, TurnOutput


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError("the vLLM backend needs vLLM on a CUDA machine: pip install 'searche1[vllm]' "
                          "(after installing a CUDA build of torch; see docs/install.md)") from e
    return vllm


class VLLMBackend:
    def __init__(self, model_path: str, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.5,
                 max_model_len: int = 8192, enable_lora: bool = False, max_lora_rank: int = 64, seed: int = 0,
                 stop_strings: tuple[str, ...] = STOP_STRINGS, **engine_kwargs):
        # The engine's model in this process (no engine core process): load_weights then hands tensors over by
        # reference instead of pickling gigabytes, as colocated trainers do. Set it to 1 to override.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # and where it does run in worker processes, load_weights ships a function to them: allowed explicitly
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        vllm = _import_vllm()
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model_path), dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                            max_model_len=max_model_len, enable_prefix_caching=True, enable_lora=enable_lora,
                            max_lora_rank=max_lora_rank, seed=seed, logprobs_mode="processed_logprobs",
                            **engine_kwargs)
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
        pairs under HF names (rollout.backends.select.plain_named_weights / folder_weights)."""
        if isinstance(weights, torch.nn.Module):
            weights = weights.state_dict().items()
        weights = [(name, tensor.detach()) for name, tensor in weights]

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
