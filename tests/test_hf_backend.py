"""HF backend: KV cache kept across turns and rows dropped mid-way, yet every sampled token's log-prob equals a
clean re-scoring of the row's own unpadded sequence (teacher forcing) within 1e-4."""

import pytest
import torch

from conftest import tiny_qwen2
from searche1.rollout.backends.base import SamplingParams, sample_next
from searche1.rollout.backends.hf import HFBackend


@pytest.fixture(scope="module")
def tokenizer(smollm2_tokenizer):
    return smollm2_tokenizer


@pytest.fixture(scope="module")
def tiny_model(tokenizer):
    return tiny_qwen2(len(tokenizer))


def rescore(model, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1, from one plain forward of the unpadded sequence."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_kv_cache_across_turns_matches_teacher_forcing(tiny_model, tokenizer):
    backend = HFBackend(tiny_model, tokenizer)
    prompts = [tokenizer.encode("who founded Kelmar?"), tokenizer.encode("a much longer prompt than the first one, "
                                                                          "with more words in it"), [7, 8]]
    backend.start(prompts)
    gen = torch.Generator().manual_seed(0)
    sampling = SamplingParams(temperature=0.7, top_p=0.9)
    seqs = {r: list(p) for r, p in enumerate(prompts)}
    checks = {r: [] for r in seqs}  # (position in seq, recorded logprob)

    def take(outs):
        for r, out in outs.items():
            for t, lp in zip(out.ids, out.logprobs):
                checks[r].append((len(seqs[r]), lp))
                seqs[r].append(t)

    take(backend.generate([0, 1, 2], 12, sampling, gen))
    obs = {0: tokenizer.encode("\n\n<information>Doc 1(Title: x) y</information>\n\n"), 2: [11, 12, 13]}
    backend.extend(obs)
    for r, ids in obs.items():
        seqs[r] += ids
    take(backend.generate([0, 1, 2], 9, sampling, gen))
    backend.release([1])  # row 1 finished: the others go on without it
    backend.extend({0: [21, 22]})
    seqs[0] += [21, 22]
    take(backend.generate([0, 2], 7, sampling, gen))
    for r, seq in seqs.items():
        ref = rescore(tiny_model, seq, temperature=0.7)
        got = torch.tensor([lp for _, lp in checks[r]])
        want = torch.stack([ref[pos - 1] for pos, _ in checks[r]])
        assert torch.allclose(got, want, atol=1e-4), (r, (got - want).abs().max())


def test_rows_parked_mid_turn_still_match_teacher_forcing(tiny_model, tokenizer, monkeypatch):
    """Rows that stop early are set aside while the others write on, then rejoin padded: the log-probs of every
    row, over turns and observations after that, still equal a clean re-scoring."""
    parks = []
    park = HFBackend._park
    monkeypatch.setattr(HFBackend, "_park", lambda self, keep: parks.append(int(keep.sum())) or park(self, keep))
    backend = HFBackend(tiny_model, tokenizer)
    backend.eos_ids = set(range(0, len(tokenizer), 8))  # ~1 token in 8 ends a turn: rows stop at scattered steps
    prompts = [tokenizer.encode(f"question number {i} " * (i + 1)) for i in range(8)]
    backend.start(prompts)
    gen = torch.Generator().manual_seed(3)
    sampling = SamplingParams(temperature=1.0)
    seqs = {r: list(p) for r, p in enumerate(prompts)}
    checks = {r: [] for r in seqs}
    for turn in range(3):
        for r, out in backend.generate(list(seqs), 30, sampling, gen).items():
            for t, lp in zip(out.ids, out.logprobs):
                checks[r].append((len(seqs[r]), lp))
                seqs[r].append(t)
        obs = {r: tokenizer.encode(f"<information>doc {r} {turn}</information>") * (r % 3) for r in seqs}
        backend.extend(obs)
        for r, ids in obs.items():
            seqs[r] += ids
    assert parks, "no row was parked: the test does not exercise parking"
    assert not backend.parked and sorted(backend.rows) == list(seqs)
    for r, seq in seqs.items():
        ref = rescore(tiny_model, seq)
        got = torch.tensor([lp for _, lp in checks[r]])
        want = torch.stack([ref[pos - 1] for pos, _ in checks[r]])
        assert torch.allclose(got, want, atol=1e-4), (r, (got - want).abs().max())


def test_seeded_sampling_is_reproducible_and_greedy_is_argmax(tiny_model, tokenizer):
    def run(seed, sampling):
        backend = HFBackend(tiny_model, tokenizer)
        backend.start([tokenizer.encode("hello there")])
        return backend.generate([0], 10, sampling, torch.Generator().manual_seed(seed))[0].ids

    s = SamplingParams(temperature=1.0)
    assert run(1, s) == run(1, s)
    greedy = run(0, SamplingParams(greedy=True))
    ids = tokenizer.encode("hello there")
    for t in greedy:
        with torch.no_grad():
            assert t == tiny_model(torch.tensor([ids])).logits[0, -1].argmax().item()
        ids.append(t)


def test_eos_and_stop_strings_end_a_turn(tiny_model, tokenizer):
    backend = HFBackend(tiny_model, tokenizer)
    backend.start([tokenizer.encode("hello")])
    first = backend.generate([0], 1, SamplingParams(greedy=True))[0].ids[0]
    backend = HFBackend(tiny_model, tokenizer)
    backend.eos_ids = {first}  # the greedy first token now counts as EOS
    backend.start([tokenizer.encode("hello")])
    out = backend.generate([0], 10, SamplingParams(greedy=True))[0]
    assert out.ids == [first] and out.finish == "eos"
    assert backend._stopped(tokenizer.encode("<think> x </think><search> capital </search>"))
    assert not backend._stopped(tokenizer.encode("<search> capital </sear"))
    out = HFBackend(tiny_model, tokenizer)
    out.start([[5]])
    assert out.generate([0], 3, SamplingParams(greedy=True))[0].finish in ("length", "eos", "stop")


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    gen = torch.Generator().manual_seed(0)
    seen = {sample_next(logits, SamplingParams(top_k=2), gen)[0].item() for _ in range(50)}
    assert seen == {2, 3}
    seen = {sample_next(logits, SamplingParams(top_p=0.5), gen)[0].item() for _ in range(50)}
    assert seen == {3}  # the top token alone holds 64% of the mass
    token, logp = sample_next(logits, SamplingParams(temperature=2.0), gen)
    assert logp.item() == pytest.approx(torch.log_softmax(logits / 2.0, -1)[0, token.item()].item())
    with pytest.raises(ValueError):
        SamplingParams(temperature=0)


def test_sample_next_with_a_generator_per_row_follows_the_distribution_and_ignores_batch_mates():
    """One generator per row: a row's token depends on its generator alone (not on the other rows), draws follow
    the filtered distribution, and a token of zero mass is never drawn."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 0.0, -1.0]])
    counts = torch.zeros(4)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    for _ in range(4000):
        token, logp = sample_next(logits, SamplingParams(top_k=3), gens)
        counts[token[0]] += 1
    expected = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), -1) * 4000
    assert counts[0] == 0 and torch.allclose(counts[1:], expected, rtol=0.1)
    assert logp[1].item() == pytest.approx(torch.log_softmax(logits[1], -1)[token[1]].item())
    alone = sample_next(logits[:1], SamplingParams(), [torch.Generator().manual_seed(7)])[0]
    paired = sample_next(logits, SamplingParams(), [torch.Generator().manual_seed(7),
                                                    torch.Generator().manual_seed(8)])[0]
    assert alone[0] == paired[0]
    with pytest.raises(ValueError, match="2 generators for 1 rows"):
        sample_next(logits[:1], SamplingParams(), gens)
    with pytest.raises(ValueError, match="non-finite"):
        sample_next(torch.tensor([[0.0, float("nan")]]), SamplingParams(), [torch.Generator()])
