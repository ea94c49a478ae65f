"""The multi-turn rollout engine: question -> trajectory, for every sample of a batch at once.

One loop over turns; in each, every live sample generates (one batched backend call), its turn is parsed with the
protocol, all of the turn's search queries go to the retriever in one call, and the observations are appended to
each sample's token ids (mask 0) without re-encoding what the model sampled. With `max_batch`, waiting samples
take the places of finished ones between turns (continuous batching at turn granularity).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from searche1 import protocol
from searche1.config import RolloutConfig
from searche1.data.qa import QAExample
from searche1.retrieval.client import RetrievalClient, RetrieverUnavailable
from searche1.reward import EMMode, score
from searche1.rollout.backends.base import Backend, SamplingParams
from searche1.rollout.trajectory import FinishReason, Trajectory, Turn


@dataclass
class _Sample:
    example: QAExample
    index: int
    prompt_text: str
    prompt_ids: list[int]
    response: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    turns_done: int = 0
    finish: FinishReason | None = None

    def add(self, ids: list[int], sampled: bool, logprobs: list[float] | None = None) -> tuple[int, int]:
        start = len(self.response)
        self.response += ids
        self.mask += [int(sampled)] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        return start, len(self.response)


def rollout(examples: Sequence[QAExample], backend: Backend, tokenizer, client: RetrievalClient,
            cfg: RolloutConfig, sampling: SamplingParams, n_samples: int = 1,
            generator: torch.Generator | None = None, max_batch: int | None = None,
            on_finish: Callable[[int], None] | None = None,
            sample_seeds: Sequence[int] | None = None, on_retrieval_failure: str = "stop") -> list[Trajectory]:
    """`n_samples` trajectories per example (sharing its group id), in example order, within the turn and token
    limits of `cfg` (its sampling fields are not read: `sampling` says how to draw).

    At most `max_batch` samples are in the backend at once (None = all); as samples finish, waiting ones take
    their places at the next turn, so the batch stays full instead of trailing off with a few long episodes.
    `on_finish(n)` is called as n more samples finish (progress bars). Sampled trajectories are reproducible for a
    given seed and max_batch (random draws follow batch positions; greedy ones do not depend on max_batch).
    `sample_seeds` (one per sample, in output order) gives each sample its own generator instead: its draws then
    depend on its seed alone, not on max_batch nor on which samples share the batch (GRPO over several processes
    reproduces a 1-process run this way). `on_retrieval_failure` (retrieval.on_failure): stop = a
    RetrieverUnavailable ends the rollout; skip = the turn's searching samples end as FinishReason.ERROR (counted,
    and left out of training losses)."""
    samples = []
    for ex in examples:
        text = protocol.make_prompt(ex.question, tokenizer)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        samples += [_Sample(ex, g, text, list(ids)) for g in range(n_samples)]
    if sample_seeds is not None:
        if len(sample_seeds) != len(samples):
            raise ValueError(f"sample_seeds has {len(sample_seeds)} seeds for {len(samples)} samples")
        own = [torch.Generator().manual_seed(int(seed)) for seed in sample_seeds]
    for s in samples:
        if len(s.prompt_ids) > cfg.max_start_length:
            s.finish = FinishReason.BUDGET
    waiting = deque(r for r, s in enumerate(samples) if s.finish is None)
    if on_finish and len(waiting) < len(samples):
        on_finish(len(samples) - len(waiting))
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    slots = max_batch or max(len(waiting), 1)
    rows: dict[int, int] = {}  # backend row -> sample number
    while waiting or rows:
        if waiting and len(rows) < slots and (not rows or backend.can_add()):
            admitted = [waiting.popleft() for _ in range(min(slots - len(rows), len(waiting)))]
            prompts = [samples[r].prompt_ids for r in admitted]
            if rows:
                new_rows = backend.add(prompts)
            else:
                backend.start(prompts)
                new_rows = list(range(len(prompts)))
            rows.update(zip(new_rows, admitted))
        active = list(rows)
        outputs = backend.generate(active, cfg.max_response_length, sampling,
                                   generator if sample_seeds is None else {row: own[rows[row]] for row in active})
        queries: dict[int, str] = {}
        inserts: dict[int, str] = {}
        for row in active:
            s, out = samples[rows[row]], outputs[row]
            start, end = s.add(out.ids, True, out.logprobs)
            action = protocol.parse_action(tokenizer.decode(out.ids))
            step = protocol.next_step(action, s.turns_done, cfg.max_turns)
            s.turns.append(Turn(start, end, step.value, action.content if step is protocol.Step.SEARCH else None))
            if step is protocol.Step.ANSWER:
                s.finish = FinishReason.ANSWER
            elif step is protocol.Step.END_NO_ANSWER:
                s.finish = FinishReason.NO_ANSWER
            elif step is protocol.Step.SEARCH:
                queries[row] = s.turns[-1].query = action.content[:cfg.max_query_chars]
            else:
                inserts[row] = protocol.INVALID_ACTION_TEXT
        if queries:  # the whole turn's searches in one retriever call
            try:
                results = client.retrieve(list(queries.values()))
            except RetrieverUnavailable:
                if on_retrieval_failure != "skip":
                    raise
                results = None
                for row in queries:  # these samples cannot go on; the others of the batch do
                    samples[rows[row]].finish = FinishReason.ERROR
            for row, docs in zip(queries, results or []):
                inserts[row] = protocol.information_block(docs)
                samples[rows[row]].turns[-1].doc_ids = [d["id"] for d in docs]
        observations = {}
        for row, text in inserts.items():
            s = samples[rows[row]]
            ids = protocol.truncate_observation_ids(tokenizer(text, add_special_tokens=False).input_ids,
                                                    cfg.max_obs_length)
            # room for the observation and one more full turn, or the sample ends here
            if len(s.prompt_ids) + len(s.response) + len(ids) + cfg.max_response_length > cfg.max_prompt_length:
                s.finish = FinishReason.BUDGET
                continue
            s.turns[-1].observation = s.add(ids, False)
            s.turns_done += 1
            observations[row] = ids
        finished = [row for row in active if samples[rows[row]].finish is not None]
        backend.release(finished)
        backend.extend(observations)
        for row in finished:
            del rows[row]
        if on_finish and finished:
            on_finish(len(finished))
    return [_finish(s, tokenizer, cfg.em_mode) for s in samples]


def _finish(s: _Sample, tokenizer, em_mode: EMMode) -> Trajectory:
    response_text = tokenizer.decode(s.response, skip_special_tokens=True)
    if EMMode(em_mode) is EMMode.SEARCHR1:  # Search-R1 scored prompt + everything in the response
        result = score(response_text, s.example.golden_answers, em_mode, prompt=s.prompt_text)
    else:
        # Only the turn that answered: an episode that ended otherwise scores 0, even when `<answer> x` in one turn
        # and `</answer>` in a later one would make a match across turns. (The inserted texts are never read: the
        # invalid-action text itself holds "<answer> and </answer>", and a passage could hold tags too.)
        answered = s.finish is FinishReason.ANSWER and s.turns and s.turns[-1].action == protocol.Step.ANSWER.value
        last = s.turns[-1] if answered else None
        written = tokenizer.decode(s.response[last.start:last.end], skip_special_tokens=True) if last else ""
        result = score(written, s.example.golden_answers, em_mode)
    return Trajectory(
        group_id=s.example.group_id, sample_index=s.index, prompt_ids=s.prompt_ids, response_ids=s.response,
        response_mask=s.mask, logprobs=s.logprobs, turns=s.turns, finish_reason=s.finish,
        answer=result.answer, reward=result.em, em=result.em, sub_em=result.sub_em, f1=result.f1,
        golden_answers=list(s.example.golden_answers),
        prompt_text=s.prompt_text, response_text=response_text)
