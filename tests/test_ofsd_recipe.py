"""The OFSD phase: hidden states line up with the model's logits, the loss of a pair falls as the adapter trains,
teacher = adapter off, the merged model equals base + adapter, and `searche1 train ofsd` runs end to end."""

import json

import pytest
import torch

from conftest import tiny_qwen2


@pytest.fixture(scope="module")
def tokenizer():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    return build_toy_tokenizer()


def _pair(tokenizer):
    from searche1 import protocol
    from searche1.rollout.trajectory import Trajectory, Turn
    from searche1.train.pairs import Pair

    def make(index, texts, reward):
        ids, mask, turns = [], [], []
        for kind, text in texts:
            new = tokenizer(text, add_special_tokens=False).input_ids
            if kind == "obs":
                turns[-1].observation = (len(ids), len(ids) + len(new))
            else:
                turns.append(Turn(len(ids), len(ids) + len(new), kind))
            ids += new
            mask += [int(kind != "obs")] * len(new)
        prompt = tokenizer(protocol.make_prompt("Where was Zorvak born?", tokenizer), add_special_tokens=False)
        return Trajectory(group_id="g", sample_index=index, prompt_ids=prompt.input_ids, response_ids=ids,
                          response_mask=mask, logprobs=[0.0] * len(ids), turns=turns, answer="x", reward=reward)

    reference = make(0, [("search", "<search> Zorvak </search>"),
                         ("obs", "<information> Doc 1(Title: Zorvak) born in Melin </information>"),
                         ("answer", "<answer> Melin </answer>")], 1.0)
    student = make(1, [("search", "<search> Zorvak city </search>"),
                       ("obs", "<information> Doc 1(Title: Zorvak) born in Melin </information>"),
                       ("answer", "<answer> Dosta </answer>")], 0.0)
    return Pair(reference, student)


def test_scored_hidden_predicts_the_sampled_tokens(tokenizer):
    from searche1.losses.ofsd import decoder_and_head, scored_hidden

    model = tiny_qwen2(len(tokenizer))
    pair = _pair(tokenizer)
    t = pair.student
    hidden = scored_hidden(model, t.prompt_ids, t)
    _, head = decoder_and_head(model)
    logits = model(input_ids=torch.tensor([t.prompt_ids + t.response_ids])).logits[0]
    rows = [len(t.prompt_ids) - 1 + j for j, m in enumerate(t.response_mask) if m]
    assert hidden.shape[0] == sum(t.response_mask) and torch.allclose(hidden @ head.T, logits[rows], atol=1e-5)


def test_pair_loss_equals_a_plain_teacher_on_the_privileged_context_against_the_adapted_student(tokenizer):
    """Brute force: the teacher is the model with its adapter off, reading the privileged prompt (which shows the
    reference); the student is the model with its adapter on, reading the plain prompt. The adapter here is
    non-zero (a fresh LoRA adapter is the identity, and would hide a teacher that ran with it on)."""
    from dataclasses import replace

    from peft import LoraConfig, get_peft_model

    from searche1.config import load_config
    from searche1.losses.ofsd import distill_loss
    from searche1.train.ofsd import pair_loss
    from searche1.train.pairs import Pair, privileged_prompt

    torch.manual_seed(0)
    model = get_peft_model(tiny_qwen2(len(tokenizer)), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                                  init_lora_weights=False))
    plain = tiny_qwen2(len(tokenizer))  # the same seed: the weights under the adapter
    cfg = load_config("toy", ["ofsd.chunk=5"])
    question, pair = "Where was Zorvak born?", _pair(tokenizer)
    student = pair.student
    rows = [j for j, m in enumerate(student.response_mask) if m]

    def logits(net, prefix):
        with torch.no_grad():
            out = net(input_ids=torch.tensor([prefix + student.response_ids])).logits[0]
        return out[[len(prefix) - 1 + j for j in rows]]

    privileged = tokenizer(privileged_prompt(question, pair.reference, tokenizer), add_special_tokens=False).input_ids
    expected, _ = distill_loss(logits(model, student.prompt_ids), logits(plain, privileged), torch.ones(len(rows)),
                               "forward", cfg.ofsd.tau_clip)
    got, stats = pair_loss(model, tokenizer, question, pair, cfg, grad=False)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-6)
    # what a teacher with the adapter on, or one without the reference, would give: far outside that tolerance
    for wrong_teacher in (logits(model, privileged), logits(plain, student.prompt_ids)):
        wrong, _ = distill_loss(logits(model, student.prompt_ids), wrong_teacher, torch.ones(len(rows)))
        assert abs(wrong.item() - expected.item()) > 1e-2 * expected.item()
    # the teacher reads the reference: another reference, another loss for the same student
    ids = tokenizer("<answer> Dosta </answer>", add_special_tokens=False).input_ids
    other = replace(pair.reference, response_ids=ids, response_mask=[1] * len(ids), logprobs=[0.0] * len(ids),
                    turns=[replace(pair.reference.turns[-1], start=0, end=len(ids))])
    assert pair_loss(model, tokenizer, question, Pair(other, student), cfg, grad=False)[0].item() != \
        pytest.approx(got.item(), rel=1e-4)


def test_pair_loss_falls_as_the_adapter_learns_and_the_merge_equals_base_plus_adapter(tokenizer):
    from peft import LoraConfig, get_peft_model

    from searche1.config import load_config
    from searche1.train.ofsd import pair_loss

    torch.manual_seed(0)
    model = get_peft_model(tiny_qwen2(len(tokenizer)), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    cfg = load_config("toy", ["ofsd.chunk=5"])
    pair = _pair(tokenizer)
    before, stats = pair_loss(model, tokenizer, "Where was Zorvak born?", pair, cfg, grad=False)
    assert before.item() > 0 and stats["kl"] > 0  # the privileged context changes the teacher's predictions
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(15):
        opt.zero_grad()
        loss, _ = pair_loss(model, tokenizer, "Where was Zorvak born?", pair, cfg)
        loss.backward()
        opt.step()
    after, _ = pair_loss(model, tokenizer, "Where was Zorvak born?", pair, cfg, grad=False)
    assert after.item() < 0.5 * before.item()

    ids = torch.tensor([pair.student.prompt_ids + pair.student.response_ids])
    with torch.no_grad():
        with model.disable_adapter():
            base_logits = model(input_ids=ids).logits
        adapted = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert not torch.allclose(adapted, base_logits, atol=1e-4)  # the adapter changed the policy
    assert torch.allclose(merged, adapted, atol=1e-4)


def test_train_ofsd_cli_end_to_end(tmp_path, capsys):
    """toy-base on a small pool: pairs are mined from real rollouts, the adapter trains, final/ is a plain HF
    folder that loads and differs from the start, and the outputs are written."""
    from searche1.cli import main
    from searche1.models import load_model

    out = tmp_path / "ofsd"
    args = ["--threads", "1", "train", "ofsd", "--out", str(out), "--model", "toy-base", "ofsd.pool_questions=60",
            "ofsd.n_samples=4", "ofsd.pairs_per_step=4", "rollout.max_response_length=64"]
    assert main(args) == 0
    assert "pairs" in capsys.readouterr().out
    pool = [json.loads(line) for line in (out / "pool.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert len(pool) == 240 and pairs, "no question of the pool had a correct and an incorrect sibling"
    assert all(p["reference"] != p["student"] and p["student_kl"] is not None for p in pairs)
    # what the viewer shows of a pair: one divergence per student token (their mean is the pair's KL), the
    # question, and the teacher's privileged prompt holding the reference
    by_key = {(t["group_id"], t["sample_index"]): t for t in pool}
    for p in pairs:
        student, reference = by_key[p["group_id"], p["student"]], by_key[p["group_id"], p["reference"]]
        assert len(p["student_token_kl"]) == sum(student["response_mask"])
        assert sum(p["student_token_kl"]) / len(p["student_token_kl"]) == pytest.approx(p["student_kl"], abs=1e-4)
        assert p["question"] in p["privileged_prompt"] and "=== worked solution ===" in p["privileged_prompt"]
        assert reference["answer"] in p["privileged_prompt"] and p["tau_clip"] == 10.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["ofsd/pairs"] == len(pairs) and records[-1]["ofsd/skipped"] == 0
    final, _ = load_model(str(out / "final"))
    start, _ = load_model("toy-base")
    assert any(not torch.equal(a, b) for a, b in zip(final.state_dict().values(), start.state_dict().values()))
    assert main(args) == 2  # the phase is done: refused
    # in a longer process (searche1 train's rounds) the global RNG is wherever earlier phases left it: the same
    # config still gives the same phase (LoRA's random init is seeded by the phase)
    from searche1.config import load_config
    from searche1.train.ofsd import train_ofsd

    torch.rand(3)
    train_ofsd(load_config("toy", args[8:]), tmp_path / "again", model_path="toy-base", log=lambda *_: None)
    again, _ = load_model(str(tmp_path / "again" / "final"))
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), again.state_dict().values()))
