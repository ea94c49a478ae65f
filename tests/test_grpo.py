"""GRPO losses against brute-force per-token loops (values and gradients)."""

import math

import pytest
import torch

from searche1.config import GRPOConfig
from searche1.losses.grpo import (
    aggregate,
    clipped_policy_loss,
    entropy_from_logits,
    group_advantages,
    grpo_loss,
    kl_penalty,
)


def brute_advantages(rewards, groups, scale):
    out = []
    for i, g in enumerate(groups):
        sib = [rewards[j] for j in range(len(groups)) if groups[j] == g]
        if len(sib) < 2:  # nothing to compare against: no signal
            out.append(0.0)
            continue
        mean = sum(sib) / len(sib)
        std = math.sqrt(sum((r - mean) ** 2 for r in sib) / (len(sib) - 1))
        out.append((rewards[i] - mean) / (std + 1e-6) if scale else rewards[i] - mean)
    return out


@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages(scale):
    rewards = [1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.2]
    groups = ["a", "a", "b", "a", "b", "c", "c", "c", "d"]
    got = group_advantages(torch.tensor(rewards), groups, scale_by_std=scale)
    assert torch.allclose(got, torch.tensor(brute_advantages(rewards, groups, scale)), atol=1e-6)
    assert got[5:8].abs().max() == 0  # same rewards: no signal
    assert got[8] == 0  # a lone sample: nothing to compare against


def brute_loss(logp, old, adv, mask, ref, ent, cfg):
    """One token at a time, with Python floats where possible."""
    hi = cfg.clip_low if cfg.clip_high is None else cfg.clip_high
    per_tok, seqs = [], []
    for b in range(logp.shape[0]):
        seq = []
        for t in range(logp.shape[1]):
            if not mask[b, t]:
                continue
            ratio = torch.exp(logp[b, t] - old[b, t])
            pl = torch.maximum(-adv[b] * ratio, -adv[b] * torch.clamp(ratio, 1 - cfg.clip_low, 1 + hi))
            d = ref[b, t] - logp[b, t]
            kl = torch.clamp(torch.exp(d) - d - 1, -10, 10)
            seq.append((pl, kl, ent[b, t]))
        seqs.append(seq)
        per_tok += seq
    if cfg.aggregation == "token-mean":
        mean = lambda k: sum(x[k] for x in per_tok) / len(per_tok)  # noqa: E731
    else:
        mean = lambda k: sum(sum(x[k] for x in s) / len(s) for s in seqs if s) / sum(1 for s in seqs if s)  # noqa
    return mean(0) + cfg.kl_coef * mean(1) - cfg.entropy_coef * mean(2)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
@pytest.mark.parametrize("clip_high", [None, 0.28])
def test_grpo_loss_matches_brute_force_with_gradients(aggregation, clip_high):
    torch.manual_seed(0)
    B, T, V = 4, 6, 11
    logits = torch.randn(B, T, V, requires_grad=True)
    tokens = torch.randint(0, V, (B, T))
    mask = torch.rand(B, T) > 0.3
    mask[3] = False  # a trajectory with no sampled tokens must not count
    old = torch.log_softmax(torch.randn(B, T, V), -1).gather(-1, tokens[..., None])[..., 0]
    ref = torch.log_softmax(torch.randn(B, T, V), -1).gather(-1, tokens[..., None])[..., 0]
    adv = torch.tensor([1.5, -0.7, 0.3, 2.0])
    cfg = GRPOConfig(clip_high=clip_high, kl_coef=0.1, entropy_coef=0.01, aggregation=aggregation)

    def parts(lg):
        logp = torch.log_softmax(lg, -1).gather(-1, tokens[..., None])[..., 0]
        return logp, entropy_from_logits(lg)

    logp, ent = parts(logits)
    loss, stats = grpo_loss(logp, old, adv, mask, cfg, ref_logprobs=ref, entropy=ent)
    (grad,) = torch.autograd.grad(loss, logits)
    logits2 = logits.detach().clone().requires_grad_(True)
    logp2, ent2 = parts(logits2)
    want = brute_loss(logp2, old, adv, mask, ref, ent2, cfg)
    (want_grad,) = torch.autograd.grad(want, logits2)
    assert loss.item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.allclose(grad, want_grad, atol=1e-6)
    assert grad[~mask].abs().max() == 0  # masked tokens get no gradient
    assert 0.0 <= stats["clip_fraction"] <= 1.0 and stats["kl"] >= 0


def test_kl_estimators_and_entropy():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.5, -2.0, -3.0])
    d = logp - ref
    assert torch.allclose(kl_penalty(logp, ref, "k1"), d)
    assert torch.allclose(kl_penalty(logp, ref, "k2"), 0.5 * d ** 2)
    k3 = kl_penalty(logp, ref, "low_var_kl")
    assert torch.allclose(k3, torch.exp(-d) + d - 1) and (k3 >= 0).all() and k3[1] == 0
    assert kl_penalty(torch.tensor([0.0]), torch.tensor([-50.0]), "k3").item() == 10  # clamped
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")
    uniform = torch.zeros(1, 1, 8)
    assert entropy_from_logits(uniform).item() == pytest.approx(math.log(8))


def test_clipping_and_aggregation():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))  # ratios 1.5, 0.5, 1.0 against old log-prob 0
    old = torch.zeros(1, 3)
    loss, clipped = clipped_policy_loss(logp, old, torch.tensor([1.0]))
    assert torch.allclose(loss, torch.tensor([[-1.2, -0.5, -1.0]]))  # positive advantage: gain capped at 1.2
    assert clipped.tolist() == [[True, False, False]]
    loss, clipped = clipped_policy_loss(logp, old, torch.tensor([-1.0]))
    assert torch.allclose(loss, torch.tensor([[1.5, 0.8, 1.0]]))  # negative advantage: cannot push below 0.8
    assert clipped.tolist() == [[False, True, False]]
    values = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(values, mask, "token-mean").item() == pytest.approx(16 / 4)
    assert aggregate(values, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 10) / 2)
    with pytest.raises(ValueError):
        aggregate(values, mask, "sum")


@pytest.fixture
def rolled_out(smollm2_tokenizer, tiny_corpus):
    """A tiny random Qwen2 and 6 real trajectories of it (2 questions x G=3), with made-up rewards."""
    from conftest import tiny_qwen2, tiny_rollouts

    model = tiny_qwen2(len(smollm2_tokenizer))
    trajs = tiny_rollouts(model, smollm2_tokenizer, tiny_corpus, n_samples=3)
    for t, r in zip(trajs, [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]):
        t.reward = r
    return model, smollm2_tokenizer, trajs


def test_policy_update_micro_batches_equal_one_batch(rolled_out):
    import copy

    from searche1.train.grpo_update import policy_update

    model, tok, trajs = rolled_out
    adv = group_advantages(torch.tensor([t.reward for t in trajs]), [t.group_id for t in trajs])
    for aggregation in ("token-mean", "seq-mean-token-mean"):
        cfg = GRPOConfig(kl_coef=0.01, entropy_coef=0.001, aggregation=aggregation)
        after = []
        for micro in (len(trajs), 2, 1):
            m = copy.deepcopy(model).train()
            ref = copy.deepcopy(model).eval()
            opt = torch.optim.SGD(m.parameters(), lr=0.5)
            stats = policy_update(m, opt, trajs, adv, cfg, tok.pad_token_id or 0, micro_batch=micro, ref_model=ref,
                                  grad_clip=1e9)
            assert stats["skipped"] == 0 and stats["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
            after.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert (after[0] - before).abs().max() > 1e-4  # the step did something
        assert torch.allclose(after[0], after[1], atol=1e-6) and torch.allclose(after[0], after[2], atol=1e-6)


def test_policy_update_skips_a_non_finite_step(rolled_out):
    import copy

    from searche1.train.grpo_update import policy_update

    model, tok, trajs = rolled_out
    m = copy.deepcopy(model).train()
    before = [p.detach().clone() for p in m.parameters()]
    adv = torch.full((len(trajs),), float("nan"))
    stats = policy_update(m, torch.optim.SGD(m.parameters(), lr=0.5), trajs, adv, GRPOConfig(kl_coef=0.0),
                          tok.pad_token_id or 0, micro_batch=2)
    assert stats["skipped"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with pytest.raises(ValueError, match="reference"):  # a KL term with nothing to compare against
        policy_update(m, torch.optim.SGD(m.parameters(), lr=0.5), trajs, adv, GRPOConfig(kl_coef=0.1),
                      tok.pad_token_id or 0, micro_batch=2)
