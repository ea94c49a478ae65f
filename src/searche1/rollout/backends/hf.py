"""HF transformers backend: one batched decoding loop that keeps the KV cache across turns.

An observation is appended to the cache instead of re-running the prefix, and finished rows leave the batch.
Rows advance unevenly (one answers in 10 tokens, another writes 200), so the cache holds padding slots: every
forward passes the full attention mask (0 on padding) and position ids counted over real tokens only, which makes
each row's logits those of its own unpadded sequence (tests/test_hf_backend.py re-scores them within 1e-4).

Within a turn, rows that already stopped are parked: their cache rows are set aside so that the decode steps of the
rows still writing do not carry them (a turn lasts as long as its longest row; in the rollout benchmark three
quarters of the slots were such idle rows). They rejoin, padded, when the turn ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch

from searche1.protocol import STOP_STRINGS
from searche1.rollout.backends.base import Generators, SamplingParams, TurnOutput, sample_next
from searche1.rollout.backends.hf_cache import kv_tensors, new_cache, set_kv_tensors

STOP_WINDOW = 16  # tokens decoded to look for a stop string; more than any stop string spans
PARK_BELOW = 0.75  # park the stopped rows once fewer than this fraction of the batch is still writing
COMPACT_ABOVE = 1.5  # compact the cache once it is this many times longer than its longest row


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
        self.parked: list[dict] = []  # stopped rows set aside during a turn (rows, kv, attention, next_logits)
        self._next_row = 0  # row numbers are never reused within a batch
        # transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`.
        # (a peft model's forward takes **kwargs: read the wrapped model's signature)
        params = inspect.signature(getattr(model, "get_base_model", lambda: model)().forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        # Only the last position's logits are used (chunks are left-padded): skip the LM head elsewhere.
        keep = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._keep_last = {keep: 1} if keep else {}

    def _position(self, row: int) -> int:
        return self.rows.index(row)

    @torch.no_grad()
    def _forward(self, input_ids: torch.Tensor, new_mask: torch.Tensor) -> None:
        """Append [B, T] left-padded tokens (new_mask 0 = padding slot) and refresh next_logits of the rows that
        got any."""
        self.attention = new_mask if self.attention is None else torch.cat([self.attention, new_mask], dim=1)
        positions = (self.attention.cumsum(dim=1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        out = self.model(input_ids=input_ids, attention_mask=self.attention, position_ids=positions,
                         use_cache=True, **{self._cache_arg: self.cache}, **self._keep_last)
        self.cache = out[self._cache_arg]
        got = new_mask[:, -1].bool()  # chunks are left-padded: a row that got tokens ends with a real one
        if got.any():
            logits = out.logits[:, -1]
            if self.next_logits is None:
                self.next_logits = logits.float()
            else:
                self.next_logits[got] = logits[got].float()

    def _padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids and mask: padding slots may sit anywhere in a row (the mask hides them), and on the
        left every row that got tokens ends with a real one."""
        width = max(max((len(s) for s in seqs), default=0), 1)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def start(self, prompts: list[list[int]]) -> None:
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.rows, self.attention, self.next_logits = list(range(len(prompts))), None, None
        self.cache = new_cache(self.model)
        self.parked, self._next_row = [], len(prompts)
        self._forward(*self._padded(prompts))

    def can_add(self) -> bool:
        return self.cache is None or kv_tensors(self.cache) is not None

    def add(self, prompts: list[list[int]]) -> list[int]:
        """New rows join the batch: their prompts are run on their own, then their cache rows are joined to the
        batch's, padded at the end to a common length."""
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if self.cache is None:
            raise RuntimeError("add() joins a running batch: call start() first")
        if not self.can_add():
            raise RuntimeError("this model's cache layout cannot be joined (sliding-window or quantized layers): "
                               "roll out without max_batch")
        batch = self._current()  # no copy: its tensors are only read by _join
        rows = list(range(self._next_row, self._next_row + len(prompts)))
        self._next_row += len(prompts)
        self.rows, self.cache, self.attention, self.next_logits = rows, new_cache(self.model), None, None
        self._forward(*self._padded(prompts))
        self._join([batch])
        return rows

    def _current(self) -> dict:
        """The whole batch as a group (rows, cache rows, mask, logits), without copying."""
        return {"rows": self.rows, "kv": kv_tensors(self.cache), "attention": self.attention,
                "next_logits": self.next_logits}

    def _group(self, positions: torch.Tensor) -> dict:
        """A copy of the batch positions in the bool mask `positions`: their rows, cache rows, mask, logits."""
        index = positions.nonzero()[:, 0]
        return {"rows": [self.rows[i] for i in index.tolist()],
                "kv": [t.index_select(0, index) for t in kv_tensors(self.cache)],
                "attention": self.attention[index], "next_logits": self.next_logits[index]}

    def _join(self, groups: list[dict]) -> None:
        """Append groups to the batch; whichever is shorter is padded at the end (padding slots: the mask hides
        them and positions count real tokens only, so a row's logits do not change)."""
        length = max([self.attention.shape[1]] + [g["attention"].shape[1] for g in groups])
        parts = [self._current()] + groups
        pad = [length - p["attention"].shape[1] for p in parts]
        self.attention = torch.cat([torch.nn.functional.pad(p["attention"], (0, n)) for p, n in zip(parts, pad)])
        self.next_logits = torch.cat([p["next_logits"] for p in parts])
        self.rows = [row for p in parts for row in p["rows"]]
        set_kv_tensors(self.cache, [torch.cat([torch.nn.functional.pad(p["kv"][i], (0, 0, 0, n))
                                                for p, n in zip(parts, pad)]) for i in range(len(parts[0]["kv"]))])
        self._compact()

    def _compact(self) -> None:
        """Drop padding slots once the cache is COMPACT_ABOVE times longer than its longest row: each row's real
        slots move, in order, to the right end of a shorter cache (left padding). Keys keep the rotary positions
        they were written with and positions count real tokens only, so no row's logits change; without this,
        rows that join a running batch (add) and observations of other rows grow the cache for good."""
        tensors = kv_tensors(self.cache) if self.cache is not None and self.rows else None
        if tensors is None:
            return
        real = self.attention.bool()
        length, longest = real.shape[1], int(real.sum(dim=1).max())
        if length <= COMPACT_ABOVE * max(longest, 1):
            return
        slots = torch.arange(length, device=real.device).expand_as(real)
        # sort padding slots first, then real slots in their order; keep the last `longest` of each row
        index = torch.sort(torch.where(real, slots + length, slots), dim=1).indices[:, length - longest:]
        self.attention = self.attention.gather(1, index)
        set_kv_tensors(self.cache, [t.gather(2, index[:, None, :, None].expand(t.shape[0], t.shape[1], longest,
                                                                                 t.shape[3])) for t in tensors])

    def _park(self, keep: torch.Tensor) -> bool:
        """Set aside the batch positions not in `keep` (a bool mask); False when the cache cannot be reshaped."""
        if kv_tensors(self.cache) is None:
            return False
        self.parked.append(self._group(~keep))
        kept = self._group(keep)
        self.rows, self.attention, self.next_logits = kept["rows"], kept["attention"], kept["next_logits"]
        set_kv_tensors(self.cache, kept["kv"])
        return True

    def _unpark(self) -> None:
        """Parked rows rejoin the batch, padded at the end to its length (padding slots, as if they had waited)."""
        if self.parked:
            self._join(self.parked)
            self.parked = []

    def _stopped(self, ids: list[int]) -> bool:
        tail = self.tokenizer.decode(ids[-STOP_WINDOW:])
        return any(s in tail for s in self.stop_strings)

    @torch.no_grad()
    def generate(self, rows: list[int], max_new_tokens: int, sampling: SamplingParams,
                 generator: Generators = None) -> dict[int, TurnOutput]:
        outputs = {r: TurnOutput([], [], "length") for r in rows}
        live = torch.zeros(len(self.rows), dtype=torch.bool, device=self.device)
        live[[self._position(r) for r in rows]] = True
        reshapeable = True
        for _ in range(max_new_tokens):
            if not live.any():
                break
            if reshapeable and live.sum() < PARK_BELOW * len(live):
                reshapeable = self._park(live)
                live = live[live] if reshapeable else live
            per_row = isinstance(generator, Mapping)
            token, logp = sample_next(self.next_logits[live], sampling,
                                      [generator[self.rows[p]] for p in live.nonzero()[:, 0].tolist()]
                                      if per_row else generator)
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
        self._unpark()
        return outputs

    def extend(self, ids_by_row: dict[int, list[int]]) -> None:
        if not any(ids_by_row.values()):
            return
        self._forward(*self._padded([ids_by_row.get(r, []) for r in self.rows]))
        self._compact()

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
        self._compact()
