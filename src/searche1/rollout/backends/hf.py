"""HF transformers backend: one batched decoding loop that keeps the KV cache across turns.

An observation is appended to the cache instead of re-running the prefix, and finished rows leave the batch.
Rows advance unevenly (one answers in 10 tokens, another writes 200), so the cache holds padding slots: every
forward passes the full attention mask (0 on padding) and position ids counted over real tokens only, which makes
each row's logits those of its own unpadded sequence (tests/test_hf_backend.py re-scores them within 1e-4).
"""

from __future__ import annotations

import inspect

import torch

from searche1.protocol import STOP_STRINGS
from searche1.rollout.backends.base import SamplingParams, TurnOutput, sample_next

STOP_WINDOW = 16  # tokens decoded to look for a stop string; more than any stop string spans


class HFBackend:
    def __init__(self, model, tokenizer, stop_strings: tuple[str, ...] = STOP_STRINGS):
        self.model, self.tokenizer, self.stop_strings = model, tokenizer, stop_strings
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {e for e in eos + [tokenizer.eos_token_id] if e is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)
        # Decoding a window every step for every row costs more than a small model's forward: only tokens that
        # contain a stop string's last character can complete one, so only they trigger the decode.
        last_chars = {stop[-1] for stop in stop_strings}
        # (raw token strings keep ASCII such as ">" as is, in byte-level BPE and SentencePiece vocabularies alike)
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.stop_candidates = {i for i, piece in enumerate(pieces)
                                if piece is not None and any(c in piece for c in last_chars)}
        self.rows: list[int] = []  # row number of each batch position
        self.cache = None
        self.attention: torch.Tensor | None = None  # [B, L], 0 on padding slots
        self.next_logits: torch.Tensor | None = None  # [B, V], after each row's last real token
        # transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def _position(self, row: int) -> int:
        return self.rows.index(row)

    @torch.no_grad()
    def _forward(self, input_ids: torch.Tensor, new_mask: torch.Tensor) -> None:
        """Append [B, T] tokens (new_mask 0 = padding slot) and refresh next_logits of rows that got a token."""
        self.attention = new_mask if self.attention is None else torch.cat([self.attention, new_mask], dim=1)
        positions = (self.attention.cumsum(dim=1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        out = self.model(input_ids=input_ids, attention_mask=self.attention, position_ids=positions,
                         use_cache=True, **{self._cache_arg: self.cache})
        self.cache = out[self._cache_arg]
        got = new_mask.any(dim=1)
        if got.any():
            # index of each row's last real token in this chunk
            last = (new_mask * torch.arange(1, new_mask.shape[1] + 1, device=new_mask.device)).argmax(dim=1)
            logits = out.logits[torch.arange(len(last), device=last.device), last]
            if self.next_logits is None:
                self.next_logits = logits.float()
            else:
                self.next_logits[got] = logits[got].float()

    def _padded(self, seqs: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(max((len(s) for s in seqs), default=0), 1)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                sl = slice(width - len(s), width) if left else slice(0, len(s))
                ids[i, sl] = torch.tensor(s, dtype=torch.long)
                mask[i, sl] = 1
        return ids.to(self.device), mask.to(self.device)

    def start(self, prompts: list[list[int]]) -> None:
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.rows, self.cache, self.attention, self.next_logits = list(range(len(prompts))), None, None, None
        self._forward(*self._padded(prompts, left=True))

    def _stopped(self, ids: list[int]) -> bool:
        tail = self.tokenizer.decode(ids[-STOP_WINDOW:])
        return any(s in tail for s in self.stop_strings)

    @torch.no_grad()
    def generate(self, rows: list[int], max_new_tokens: int, sampling: SamplingParams,
                 generator: torch.Generator | None = None) -> dict[int, TurnOutput]:
        outputs = {r: TurnOutput([], [], "length") for r in rows}
        live = torch.zeros(len(self.rows), dtype=torch.bool, device=self.device)
        live[[self._position(r) for r in rows]] = True
        for _ in range(max_new_tokens):
            if not live.any():
                break
            token, logp = sample_next(self.next_logits[live], sampling, generator)
            step_ids = torch.full((len(self.rows), 1), self.pad_id, dtype=torch.long, device=self.device)
            step_ids[live, 0] = token.to(self.device)
            step_mask = live.long()[:, None]
            for pos, t, lp in zip(live.nonzero()[:, 0].tolist(), token.tolist(), logp.tolist()):
                out = outputs[self.rows[pos]]
                out.ids.append(t)
                out.logprobs.append(lp)
            self._forward(step_ids, step_mask)  # the last sampled token goes into the cache too
            for pos in live.nonzero()[:, 0].tolist():
                out = outputs[self.rows[pos]]
                if out.ids[-1] in self.eos_ids:
                    out.finish = "eos"
                elif out.ids[-1] in self.stop_candidates and self._stopped(out.ids):
                    out.finish = "stop"
                else:
                    continue
                live[pos] = False
        return outputs

    def extend(self, ids_by_row: dict[int, list[int]]) -> None:
        if not any(ids_by_row.values()):
            return
        self._forward(*self._padded([ids_by_row.get(r, []) for r in self.rows], left=False))

    def release(self, rows: list[int]) -> None:
        gone = set(rows)
        keep = [i for i, r in enumerate(self.rows) if r not in gone]
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.cache.batch_select_indices(index)
        self.attention = self.attention[index]
        self.next_logits = self.next_logits[index]
        self.rows = [self.rows[i] for i in keep]
