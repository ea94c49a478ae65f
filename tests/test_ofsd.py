"""OFSD losses against brute-force per-token loops (values and gradients), and the chunked loss against the full
one: zero for identical models, the clip caps each token, masked tokens have no effect."""

import math

import pytest
import torch

from searche1.losses.ofsd import chunked_distill_loss, distill_loss, token_divergence

KINDS = ["forward", "reverse", "jsd"]


def brute_divergence(s_logits, t_logits, kind, beta=0.5, top_k=None):
    """One token at a time, one vocabulary entry at a time."""
    out = []
    for s_row, t_row in zip(s_logits.tolist(), t_logits.tolist()):
        if top_k:
            kth = sorted(t_row, reverse=True)[top_k - 1]
            t_row = [x if x >= kth else -math.inf for x in t_row]
        zs = math.log(sum(math.exp(x) for x in s_row))
        zt = math.log(sum(math.exp(x) for x in t_row if x > -math.inf))
        ps = [math.exp(x - zs) for x in s_row]
        pt = [math.exp(x - zt) if x > -math.inf else 0.0 for x in t_row]
        if kind == "forward":
            out.append(sum(t * (math.log(t) - math.log(s)) for s, t in zip(ps, pt) if t > 0))
        elif kind == "reverse":
            out.append(sum(s * (math.log(s) - math.log(t)) for s, t in zip(ps, pt)))
        else:
            m = [beta * t + (1 - beta) * s for s, t in zip(ps, pt)]
            out.append(beta * sum(t * math.log(t / mm) for t, mm in zip(pt, m) if t > 0)
                       + (1 - beta) * sum(s * math.log(s / mm) for s, mm in zip(ps, m)))
    return torch.tensor(out, dtype=torch.float64)


def brute_loss(s_logits, t_logits, mask, kind, tau, top_k=None):
    per = brute_divergence(s_logits, t_logits, kind, top_k=top_k)
    kept = [min(x, tau) if tau is not None else x for x, m in zip(per.tolist(), mask.tolist()) if m]
    return sum(kept) / max(len(kept), 1)


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(7, 11, generator=g, dtype=torch.float64) * 2,
            torch.randn(7, 11, generator=g, dtype=torch.float64) * 2)


@pytest.mark.parametrize("kind", KINDS)
def test_token_divergence_matches_brute_force(logits, kind):
    s, t = logits
    got = token_divergence(torch.log_softmax(s, -1), torch.log_softmax(t, -1), kind)
    assert torch.allclose(got, brute_divergence(s, t, kind), atol=1e-10)
    assert (got >= -1e-12).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tau", [None, 10.0, 0.5])
def test_distill_loss_value_and_gradient_match_brute_force(logits, kind, tau):
    s, t = logits
    mask = torch.tensor([1, 1, 0, 1, 1, 0, 1])
    s = s.clone().requires_grad_(True)
    loss, stats = distill_loss(s, t, mask, kind, tau)
    assert loss.item() == pytest.approx(brute_loss(s.detach(), t, mask, kind, tau), abs=1e-9)
    loss.backward()
    eps, numeric = 1e-6, torch.zeros_like(s)
    for i in range(s.shape[0]):
        for v in range(s.shape[1]):
            d = torch.zeros_like(s)
            d[i, v] = eps
            numeric[i, v] = (brute_loss(s.detach() + d, t, mask, kind, tau)
                             - brute_loss(s.detach() - d, t, mask, kind, tau)) / (2 * eps)
    assert torch.allclose(s.grad, numeric, atol=1e-6)
    assert stats["kl"] == pytest.approx(float(brute_divergence(s.detach(), t, kind)[mask.bool()].mean()))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_when_teacher_equals_student(logits, kind):
    s, _ = logits
    s = s.clone().requires_grad_(True)
    loss, _ = distill_loss(s, s.detach().clone(), torch.ones(7), kind)
    loss.backward()
    assert abs(loss.item()) < 1e-12 and s.grad.abs().max() < 1e-12


def test_clip_caps_each_token_and_stops_its_gradient():
    s = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[40.0, 0, 0, 0, 0], [0.1, 0, 0, 0, 0]], dtype=torch.float64)  # row 0: KL ~ ln 5 >> tau
    loss, stats = distill_loss(s, t, torch.ones(2), "forward", tau_clip=0.5)
    per = brute_divergence(s.detach(), t, "forward")
    assert per[0] > 0.5 > per[1]
    assert loss.item() == pytest.approx((0.5 + per[1].item()) / 2)
    loss.backward()
    assert s.grad[0].abs().max() == 0 and s.grad[1].abs().max() > 0
    assert stats["clipped_fraction"] == 0.5


def test_masked_tokens_have_no_effect(logits):
    s, t = logits
    mask = torch.tensor([1, 0, 1, 1, 0, 1, 1])
    a = s.clone().requires_grad_(True)
    b_init = s.clone()
    b_init[~mask.bool()] = 100.0  # garbage where masked
    b = b_init.requires_grad_(True)
    la, _ = distill_loss(a, t, mask)
    lb, _ = distill_loss(b, t, mask)
    la.backward()
    lb.backward()
    assert la.item() == pytest.approx(lb.item(), abs=1e-12)
    assert torch.equal(a.grad[mask.bool()], b.grad[mask.bool()]) and b.grad[~mask.bool()].abs().max() == 0


def test_top_k_teacher_matches_brute_force_and_k_equal_v_is_exact(logits):
    s, t = logits
    mask = torch.ones(7)
    loss, _ = distill_loss(s, t, mask, "forward", None, top_k=3)
    assert loss.item() == pytest.approx(brute_loss(s, t, mask, "forward", None, top_k=3), abs=1e-9)
    assert distill_loss(s, t, mask, top_k=11)[0].item() == pytest.approx(distill_loss(s, t, mask)[0].item())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 3, 50])
@pytest.mark.parametrize("tau,top_k", [(10.0, None), (0.8, None), (None, 4)])
def test_chunked_loss_equals_the_full_one_in_value_and_gradient(kind, chunk, tau, top_k):
    if kind == "reverse" and top_k:
        with pytest.raises(ValueError, match="reverse KL infinite"):
            distill_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1), kind, tau, top_k)
        return
    g = torch.Generator().manual_seed(1)
    n, h, v = 9, 6, 13
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64, requires_grad=True)
    t_hidden, t_weight = torch.randn(n, h, generator=g, dtype=torch.float64), torch.randn(v, h, generator=g,
                                                                                             dtype=torch.float64)
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1])
    full, full_stats = distill_loss(hidden @ weight.T, t_hidden @ t_weight.T, mask, kind, tau, top_k)
    g_hidden, g_weight = torch.autograd.grad(full, (hidden, weight))
    chunked, stats = chunked_distill_loss(hidden, weight, t_hidden, t_weight, mask, kind, tau, top_k, chunk=chunk)
    c_hidden, c_weight = torch.autograd.grad(chunked, (hidden, weight))
    assert chunked.item() == pytest.approx(full.item(), abs=1e-10)
    assert torch.allclose(c_hidden, g_hidden, atol=1e-10) and torch.allclose(c_weight, g_weight, atol=1e-10)
    assert stats == pytest.approx(full_stats)


def test_chunked_loss_with_a_frozen_head_and_nothing_to_score():
    """LoRA OFSD: the LM head does not train (no gradient asked for it); an all-masked batch is a zero loss."""
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(5, 4, generator=g, requires_grad=True)
    weight = torch.randn(7, 4, generator=g)
    loss, stats = chunked_distill_loss(hidden, weight, torch.randn(5, 4, generator=g), weight, torch.ones(5), chunk=2)
    loss.backward()
    assert hidden.grad.abs().sum() > 0 and weight.grad is None
    empty, _ = chunked_distill_loss(hidden, weight, hidden.detach(), weight, torch.zeros(5), chunk=2)
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="chunk"):
        chunked_distill_loss(hidden, weight, hidden, weight, torch.ones(5), chunk=0)
