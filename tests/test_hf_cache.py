"""The HF backend's pre-allocated KV cache: appending in place holds exactly what concatenation would, and a
model decodes with it to the same logits, bit for bit, as with transformers' DynamicCache."""

import torch

from conftest import tiny_qwen2
from searche1.rollout.backends.base import SamplingParams, sample_next
from searche1.rollout.backends.hf_cache import PreallocatedLayer, kv_tensors, new_cache


def test_appending_in_place_holds_what_concatenation_holds():
    layer, keys, values = PreallocatedLayer(), [], []
    torch.manual_seed(0)
    for n in (5, 1, 1, 70, 1, 3, 200):
        k, v = torch.randn(3, 2, n, 4), torch.randn(3, 2, n, 4)
        keys.append(k)
        values.append(v)
        got_k, got_v = layer.update(k, v)
        assert torch.equal(got_k, torch.cat(keys, dim=2)) and torch.equal(got_v, torch.cat(values, dim=2))
    assert layer.get_seq_length() == 281 and layer._keys.shape[2] > 281  # room left for the next steps
    layer.batch_select_indices(torch.tensor([2, 0]))  # what release() does
    k = torch.randn(2, 2, 1, 4)
    got_k, _ = layer.update(k, torch.randn(2, 2, 1, 4))
    assert torch.equal(got_k, torch.cat([torch.cat(keys, dim=2)[[2, 0]], k], dim=2))
    layer.crop(-2)
    assert layer.get_seq_length() == 280 and torch.equal(layer.keys, got_k[:, :, :280])


def test_a_model_decodes_the_same_logits_with_the_preallocated_cache():
    from transformers import DynamicCache

    model = tiny_qwen2(64)
    torch.manual_seed(1)
    ids, mask = torch.randint(1, 64, (3, 7)), torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0  # a left-padded row
    logits = {}
    for name, cache in (("dynamic", DynamicCache(config=model.config)), ("preallocated", new_cache(model))):
        step_ids, step_mask, seen = ids, mask, []
        with torch.no_grad():
            for _ in range(80):  # past the first buffer's room, so it grows mid-way
                positions = (step_mask.cumsum(1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
                out = model(input_ids=step_ids, attention_mask=step_mask, position_ids=positions, cache=cache,
                            use_cache=True)
                seen.append(out.logits[:, -1])
                step_ids = out.logits[:, -1:].argmax(-1)
                step_mask = torch.cat([step_mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
        logits[name] = torch.stack(seen)
        if name == "preallocated":
            assert all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
            assert kv_tensors(cache) is not None  # the backend can park, join and compact its rows
    assert torch.equal(logits["dynamic"], logits["preallocated"])


def test_sample_next_with_one_generator_follows_the_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, float("-inf"), -1.0]])
    gen, counts = torch.Generator().manual_seed(0), torch.zeros(2, 4)
    for _ in range(4000):
        token, _ = sample_next(logits, SamplingParams(), gen)
        counts[0, token[0]] += 1
        counts[1, token[1]] += 1
    assert torch.allclose(counts, torch.softmax(logits, -1) * 4000, atol=100)
    assert counts[1, 2] == 0  # no mass, never drawn
    again = [sample_next(logits, SamplingParams(), torch.Generator().manual_seed(5))[0] for _ in range(2)]
    assert torch.equal(again[0], again[1])  # seeded draws repeat
