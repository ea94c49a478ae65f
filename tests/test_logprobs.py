"""Teacher-forced scoring of a padded batch equals the log-probs the rollout recorded (T != 1 included)."""

import torch

from conftest import tiny_qwen2, tiny_rollouts
from searche1.losses.grpo import entropy_from_logits
from searche1.losses.logprobs import response_logprobs
from searche1.rollout.trajectory import collate


def test_batch_scoring_matches_rollout_logprobs(smollm2_tokenizer, tiny_corpus):
    tok = smollm2_tokenizer
    model = tiny_qwen2(len(tok))
    trajs = tiny_rollouts(model, tok, tiny_corpus, n_samples=2, temperature=0.8, max_turns=2,
                          max_response_length=10, seed=1)
    batch = collate(trajs, tok.pad_token_id or 0)
    with torch.no_grad():
        logp, entropy = response_logprobs(model, batch, temperature=0.8, with_entropy=True)
    sampled = batch["response_mask"]
    assert torch.allclose(logp[sampled], batch["logprobs"][sampled], atol=1e-4)
    assert (logp[batch["response_attention_mask"] == 0] == 0).all()
    # entropy of the first response position of row 0, from a plain unpadded forward
    t = trajs[0]
    with torch.no_grad():
        first = model(torch.tensor([t.prompt_ids])).logits[:, -1:] / 0.8
    assert torch.allclose(entropy[0, 0], entropy_from_logits(first)[0, 0], atol=1e-4)
