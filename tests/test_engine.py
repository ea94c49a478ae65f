"""The rollout engine: protocol turns, batched retrieval, masks that cover exactly the inserted text, budgets, and
log-probs that re-score under the model. A scripted test double plays the model for the protocol cases; the real HF
backend with a tiny random model checks masks and log-probs end to end."""

import pytest
import torch

from conftest import tiny_qwen2
from searche1 import protocol
from searche1.config import RolloutConfig
from searche1.data.qa import QAExample
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.rollout.backends.base import SamplingParams, TurnOutput
from searche1.rollout.engine import rollout
from searche1.rollout.trajectory import FinishReason


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


class CountingClient(InProcessClient):
    def __init__(self, retriever, topk=3):
        super().__init__(retriever, topk)
        self.calls = []

    def retrieve(self, queries, topk=None):
        self.calls.append(list(queries))
        return super().retrieve(queries, topk)


@pytest.fixture
def client(tiny_corpus):
    return CountingClient(BM25Retriever.build(tiny_corpus), topk=2)


class ScriptedBackend:
    """Test double: plays fixed turn texts per row (encoded once, so the engine only ever sees ids)."""

    def __init__(self, tokenizer, scripts):
        self.tok, self.scripts, self.released, self.extended = tokenizer, scripts, [], {}
        self.turn = {}

    def start(self, prompts):
        self.turn = {r: 0 for r in range(len(prompts))}
        self.starts = getattr(self, "starts", 0) + 1

    def can_add(self):
        return True

    def add(self, prompts):
        rows = list(range(max(self.turn) + 1, max(self.turn) + 1 + len(prompts)))
        self.turn.update({r: 0 for r in rows})
        return rows

    def generate(self, rows, max_new_tokens, sampling, generator=None):
        out = {}
        for r in rows:
            ids = self.tok.encode(self.scripts[r][self.turn[r]])[:max_new_tokens]
            self.turn[r] += 1
            out[r] = TurnOutput(ids, [-0.5] * len(ids), "stop")
        return out

    def extend(self, ids_by_row):
        for r, ids in ids_by_row.items():
            self.extended.setdefault(r, []).append(ids)

    def release(self, rows):
        self.released += rows


def assert_rescores(model, t):
    """The sampled tokens' recorded log-probs equal a teacher-forced re-scoring of prompt + response."""
    ids = t.prompt_ids + t.response_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    ref = logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0][len(t.prompt_ids) - 1:]
    sampled = torch.tensor(t.response_mask, dtype=torch.bool)
    assert torch.allclose(torch.tensor(t.logprobs)[sampled], ref[sampled], atol=1e-4)


def _ex(q="Where was Zorvak born", a=("Melin",)):
    return QAExample("1", q, list(a), "toy")


def test_search_then_answer(tokenizer, client):
    scripts = {0: ["<think>need it</think><search> Zorvak painter born </search>", "<answer> Melin </answer>"],
               1: ["<answer> Dosta </answer>"]}
    backend = ScriptedBackend(tokenizer, scripts)
    t0, t1 = rollout([_ex()], backend, tokenizer, client, RolloutConfig(), SamplingParams(), n_samples=2)
    assert client.calls == [["Zorvak painter born"]]
    assert (t0.finish_reason, t0.answer, t0.reward, t0.n_searches) == (FinishReason.ANSWER, "Melin", 1.0, 1)
    assert (t1.finish_reason, t1.reward, t1.n_searches) == (FinishReason.ANSWER, 0.0, 0)
    assert t0.group_id == t1.group_id and (t0.sample_index, t1.sample_index) == (0, 1)
    docs = client.retrieve(["Zorvak painter born"])[0]
    (a, b), = t0.masked_spans()
    assert tokenizer.decode(t0.response_ids[a:b]) == protocol.information_block(docs)
    assert t0.turns[0].doc_ids == [d["id"] for d in docs] and t0.turns[0].observation == (a, b)
    assert all(lp == -0.5 for lp, m in zip(t0.logprobs, t0.response_mask) if m)
    assert all(lp == 0.0 for lp, m in zip(t0.logprobs, t0.response_mask) if not m)
    assert sorted(backend.released) == [0, 1]


def test_turn_queries_are_batched_into_one_call(tokenizer, client):
    scripts = {r: [f"<search> query {r} Kelmar </search>", "<answer> x </answer>"] for r in range(3)}
    rollout([_ex()] * 3, ScriptedBackend(tokenizer, scripts), tokenizer, client, RolloutConfig(), SamplingParams())
    assert client.calls == [["query 0 Kelmar", "query 1 Kelmar", "query 2 Kelmar"]]


def test_invalid_actions_and_the_final_turn(tokenizer, client):
    scripts = {0: ["no tags here", "<search> a </search>", "still nothing", "<search> b </search>",
                   "<search> c </search>"]}
    (t,) = rollout([_ex()], ScriptedBackend(tokenizer, scripts), tokenizer, client, RolloutConfig(max_turns=4),
                   SamplingParams())
    assert [turn.action for turn in t.turns] == ["invalid", "search", "invalid", "search", "end_no_answer"]
    assert t.finish_reason is FinishReason.NO_ANSWER and t.answer is None and t.reward == 0.0
    spans = t.masked_spans()
    assert [tokenizer.decode(t.response_ids[a:b]) for a, b in spans][0] == protocol.INVALID_ACTION_TEXT
    assert len(spans) == 4 and client.calls == [["a"], ["b"]]


def test_budgets(tokenizer, client):
    scripts = {0: ["<search> Zorvak </search>", "<answer> Melin </answer>"]}
    (t,) = rollout([_ex()], ScriptedBackend(tokenizer, scripts), tokenizer, client,
                   RolloutConfig(max_prompt_length=200, max_response_length=50), SamplingParams())
    assert t.finish_reason is FinishReason.BUDGET and t.masked_spans() == []  # no room for the observation
    (t,) = rollout([_ex()], ScriptedBackend(tokenizer, scripts), tokenizer, client,
                   RolloutConfig(max_obs_length=7), SamplingParams())
    (a, b), = t.masked_spans()
    assert b - a == 7 and t.finish_reason is FinishReason.ANSWER
    (t,) = rollout([_ex()], ScriptedBackend(tokenizer, scripts), tokenizer, client,
                   RolloutConfig(max_start_length=10), SamplingParams())
    assert t.finish_reason is FinishReason.BUDGET and t.response_ids == []


def test_real_backend_masks_and_logprobs(tokenizer, tiny_corpus):
    """Tiny random Qwen2: whatever it writes, masked spans are exactly the inserted texts and the sampled tokens
    re-score to the recorded log-probs under the model (teacher forcing on prompt + response)."""
    from searche1.rollout.backends.hf import HFBackend

    model = tiny_qwen2(len(tokenizer))
    client = InProcessClient(BM25Retriever.build(tiny_corpus), topk=2)
    trajs = rollout([_ex(), _ex("Who founded Kelmar", ("Zorvak",))], HFBackend(model, tokenizer), tokenizer, client,
                    RolloutConfig(max_turns=2, max_response_length=12), SamplingParams(temperature=1.0),
                    n_samples=2, generator=torch.Generator().manual_seed(0))
    assert len(trajs) == 4
    for t in trajs:
        assert t.masked_spans(), "a random model writes no valid tag: every turn gets the invalid-action text"
        for a, b in t.masked_spans():
            assert tokenizer.decode(t.response_ids[a:b]) == protocol.INVALID_ACTION_TEXT
        assert_rescores(model, t)


def test_strict_em_reads_only_model_text_searchr1_reads_all(tokenizer, client):
    """The invalid-action text holds "<answer> and </answer>": it must not become the answer in strict mode."""
    scripts = {0: ["no tags", "<search> x </search>", "<search> y </search>"]}
    ex = _ex(a=("and",))
    (t,) = rollout([ex], ScriptedBackend(tokenizer, scripts), tokenizer, client, RolloutConfig(max_turns=2),
                   SamplingParams())
    assert t.answer is None and t.reward == 0.0
    (t,) = rollout([ex], ScriptedBackend(tokenizer, scripts), tokenizer, client,
                   RolloutConfig(max_turns=2, em_mode="searchr1"), SamplingParams())
    assert t.answer == "and" and t.reward == 1.0  # Search-R1's scoring, kept as is for comparable numbers


def test_strict_em_takes_the_answer_from_the_turn_that_answered(tokenizer, client):
    """`<answer> Melin` in one turn and `</answer>` in a later one: the episode never answered, so it scores 0,
    although the model-written text joined across turns holds a complete `<answer> Melin</answer>`."""
    scripts = {0: ["<answer> Melin", "</answer>", "no tags"], 1: ["<search> x </search>", "<answer> Melin </answer>"]}
    split, answered = (rollout([_ex()], ScriptedBackend(tokenizer, {0: scripts[i]}), tokenizer, client,
                               RolloutConfig(max_turns=2), SamplingParams())[0] for i in (0, 1))
    assert split.finish_reason is FinishReason.NO_ANSWER
    assert (split.answer, split.reward, split.em, split.sub_em, split.f1) == (None, 0.0, 0.0, 0.0, 0.0)
    assert answered.finish_reason is FinishReason.ANSWER and (answered.answer, answered.reward) == ("Melin", 1.0)


def test_max_batch_refills_freed_places(tokenizer, client):
    """With 2 places for 4 samples, a sample that answers at once frees its place for the next waiting one at the
    next turn; every sample still gets its own script, and results come back in example order."""
    scripts = {0: ["<answer> Melin </answer>"],
               1: ["<search> Zorvak born </search>", "<search> Melin </search>", "<answer> Melin </answer>"],
               2: ["<search> Kelmar </search>", "<answer> Dosta </answer>"],
               3: ["<answer> Melin </answer>"]}
    backend = ScriptedBackend(tokenizer, scripts)
    finished = []
    trajs = rollout([_ex()] * 4, backend, tokenizer, client, RolloutConfig(), SamplingParams(), max_batch=2,
                    on_finish=finished.append)
    assert [t.n_searches for t in trajs] == [0, 2, 1, 0] and [t.reward for t in trajs] == [1.0, 1.0, 0.0, 1.0]
    # turn 1: samples 0, 1 (0 answers); turn 2: 1 and newcomer 2 search together; turn 3: both answer, the batch
    # is empty and sample 3 starts a fresh one
    assert client.calls == [["Zorvak born"], ["Melin", "Kelmar"]]
    assert backend.starts == 2 and sum(finished) == 4
    with pytest.raises(ValueError):
        rollout([_ex()], backend, tokenizer, client, RolloutConfig(), SamplingParams(), max_batch=0)


@pytest.mark.parametrize("stop_mid_turn", [False, True])
def test_max_batch_with_the_real_backend_rescores(tokenizer, tiny_corpus, monkeypatch, stop_mid_turn):
    """Rows joined mid-way (their prompts run apart, then their cache rows padded and joined), and with
    stop_mid_turn rows parked mid-turn as well, still re-score to their recorded log-probs; the cache stays
    compact; the same seed gives the same trajectories again."""
    from searche1.rollout.backends.hf import HFBackend

    adds, lengths, parks = [], [], []
    add, extend, park = HFBackend.add, HFBackend.extend, HFBackend._park
    monkeypatch.setattr(HFBackend, "add", lambda self, prompts: adds.append(len(prompts)) or add(self, prompts))
    monkeypatch.setattr(HFBackend, "_park", lambda self, keep: parks.append(1) or park(self, keep))

    def watch(self, ids_by_row):  # cache length against the longest row it holds, after each turn's observations
        extend(self, ids_by_row)
        if self.attention is not None and self.rows:
            lengths.append((self.attention.shape[1], int(self.attention.sum(dim=1).max())))
    monkeypatch.setattr(HFBackend, "extend", watch)
    model = tiny_qwen2(len(tokenizer))
    client = InProcessClient(BM25Retriever.build(tiny_corpus), topk=2)
    short, long = _ex("Where is Dosta"), _ex("Where is Dosta " + "and then some more words " * 8)
    # A random model writes no tags, so turns end by budget: long prompts after one turn, short ones after two.
    p_short = len(tokenizer(protocol.make_prompt(short.question, tokenizer), add_special_tokens=False).input_ids)
    invalid = len(tokenizer(protocol.INVALID_ACTION_TEXT, add_special_tokens=False).input_ids)
    limits = RolloutConfig(max_turns=4, max_response_length=12, max_prompt_length=p_short + 12 + invalid + 12 + 13)

    def run():
        backend = HFBackend(model, tokenizer)
        if stop_mid_turn:  # ~1 token in 8 ends a turn (as EOS): rows stop at scattered steps and get parked
            backend.eos_ids = set(range(0, len(tokenizer), 8))
        return rollout([long, short, long, short, short, long] * 2, backend, tokenizer, client, limits,
                       SamplingParams(temperature=1.0), n_samples=2, generator=torch.Generator().manual_seed(0),
                       max_batch=3)

    trajs = run()
    assert adds, "no sample joined a running batch: the test does not exercise add()"
    assert bool(parks) == stop_mid_turn
    assert all(length <= 1.5 * longest for length, longest in lengths)  # padding slots do not pile up
    if not stop_mid_turn:  # full-length turns: long prompts end after one, short ones after two
        assert [len(t.turns) for t in trajs] == [1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 1, 1] * 2  # each example twice
    assert [t.response_ids for t in trajs] == [t.response_ids for t in run()]
    for t in trajs:
        assert_rescores(model, t)


def test_backend_that_cannot_add_gets_new_samples_only_when_empty(tokenizer, client):
    """Without add(), waiting samples start a fresh batch once the running one has emptied; all finish."""
    scripts = {0: ["<answer> Melin </answer>"], 1: ["<search> a </search>", "<answer> Melin </answer>"],
               2: ["<answer> Melin </answer>"]}

    class NoAdd(ScriptedBackend):
        def can_add(self):
            return False

        def start(self, prompts):  # rows of a fresh batch restart at 0: play the scripts in admission order
            super().start(prompts)
            self.batches = getattr(self, "batches", []) + [len(prompts)]

        def generate(self, rows, max_new_tokens, sampling, generator=None):
            offset = sum(self.batches[:-1])
            out = {}
            for r in rows:
                ids = self.tok.encode(self.scripts[offset + r][self.turn[r]])
                self.turn[r] += 1
                out[r] = TurnOutput(ids, [-0.5] * len(ids), "stop")
            return out

    backend = NoAdd(tokenizer, scripts)
    trajs = rollout([_ex()] * 3, backend, tokenizer, client, RolloutConfig(), SamplingParams(), max_batch=2)
    assert backend.batches == [2, 1] and [t.n_searches for t in trajs] == [0, 1, 0]
    assert all(t.finish_reason is FinishReason.ANSWER for t in trajs)


def test_sample_seeds_make_each_trajectory_independent_of_its_batch(tokenizer, tiny_corpus):
    """With a seed per sample, a sample's trajectory is the same alone, in a bigger batch, or with max_batch
    refills (what lets GRPO split a step's prompts over processes and still reproduce a 1-process run)."""
    from searche1.rollout.backends.hf import HFBackend

    model = tiny_qwen2(len(tokenizer))
    client = InProcessClient(BM25Retriever.build(tiny_corpus), topk=2)
    examples = [_ex(), _ex("Who founded Kelmar", ("Zorvak",)), _ex("Where is Dosta", ("Quenland",))]
    limits, sampling = RolloutConfig(max_turns=2, max_response_length=10), SamplingParams(temperature=1.0)

    def run(exs, seeds, max_batch=None):
        return [(t.response_ids, t.logprobs) for t in rollout(exs, HFBackend(model, tokenizer), tokenizer, client,
                                                              limits, sampling, n_samples=2, max_batch=max_batch,
                                                              sample_seeds=seeds)]

    def same(a, b):  # the same tokens; log-probs equal up to float noise (other batch shapes, other padding)
        return all(ids_a == ids_b and lp_a == pytest.approx(lp_b, abs=1e-4) for (ids_a, lp_a), (ids_b, lp_b)
                   in zip(a, b, strict=True))

    seeds = [11, 12, 13, 14, 15, 16]
    everything = run(examples, seeds)
    assert same(run(examples[1:], seeds[2:]), everything[2:])
    assert same(run(examples, seeds, max_batch=3), everything)
    alone = run(examples[:1], [11, 99])
    assert same(alone[:1], everything[:1]) and alone[1][0] != everything[1][0]
    with pytest.raises(ValueError, match="sample_seeds has 1 seeds for 2 samples"):
        run(examples[:1], [1])
