"""Does a toy model answer a comparison with one of the question's two names, and can it learn to?

Teacher-forced on the scripted searcher's flawless one-search comparisons ("A or B founded year", then the answer
straight after the block; toy/episodes.py) of a world's toy-2wikimultihopqa test questions: at the answer
position, the mean probability on the two subjects, the share whose argmax is a subject, and the share whose
argmax is the right one. With `--quote compare` the answer turn first states both values ("A has Y1 and B has Y2,
so the answer is A.") and the choice is measured where that reasoning names the answer. With `--fit STEPS`, the
model is then trained on `--fit-episodes` comparisons of a pretraining world (Adam, `--lr`, the warm start's loss
weights) and measured again on those (memorised?) and on the test ones (learned?). docs/warmstart.md, "Comparisons
are memorised, not copied (s11)" and "A comparison that states both values before it answers (s12)".

    python scripts/comparison_probe.py MODEL [MODEL ...] [--seed 2026] [--fit 40] [--answer-first] [--quote compare]
        [--threads 2]
"""

import argparse
import json
import random

import torch

from searche1 import protocol
from searche1.data.toyworld.demos import demonstrate
from searche1.data.toyworld.generator import WorldConfig
from searche1.models import load_model
from searche1.toy.episodes import FLAWLESS, answer_named_first, encode_demo, open_world, question_prompt_ids
from searche1.toy.warmstart import WarmstartConfig, masked_lm_loss, padded_rows, written_token_weights


def comparison_episodes(world_cfg: WorldConfig, tokenizer, n: int,
                        answer_first: bool = False, quote_style: str = "none"
                        ) -> list[tuple[list[int], list[int], int, list[int]]]:
    """Up to n flawless one-search comparison episodes whose block states both values, each as (ids, loss mask,
    answer position, the two subjects' token ids); the answer position is where the answer's token is predicted.
    answer_first: each question names its answer first (toy/episodes.answer_named_first). quote_style "compare":
    the position is where the answer turn's reasoning names the answer, before <answer> copies it."""
    world, client, questions = open_world(world_cfg)
    facts, rng, out = world.fact_map(), random.Random(0), []
    vocab = tokenizer.get_vocab()
    for ex in questions:
        if len(out) == n:
            break
        if "subjects" not in (ex.metadata or {}):
            continue
        ex = answer_named_first(ex) if answer_first else ex
        segments = demonstrate(ex, facts, client, rng, FLAWLESS, quote_style=quote_style, compare_in_one_search=True)
        if protocol.parse_action(segments[-1][0]).content != ex.golden_answers[0] or \
                quote_style == "compare" and not segments[-1][0].startswith("<think>"):
            continue  # the block did not state both values: the scripted answer is a guess
        ids, mask = encode_demo(question_prompt_ids(tokenizer, ex.question), segments, tokenizer,
                                protocol.DEFAULT_MAX_OBS_LENGTH)
        subjects = [vocab.get(" " + name) for name in ex.metadata["subjects"]]
        answer = vocab.get(" " + ex.golden_answers[0])
        if None in subjects or answer not in ids:
            raise SystemExit(f"{ex.question!r}: a subject is not one token with its space (--spaced-values model?)")
        at = len(ids) - 1 - ids[::-1].index(answer) - 1
        if quote_style == "compare":  # the reasoning's "so the answer is A", not <answer>'s copy of it
            at -= ids[at::-1].index(answer) + 1
        out.append((ids, mask, at, subjects))
    return out


@torch.no_grad()
def subject_rates(model, episodes) -> dict[str, float]:
    p_subject = argmax_subject = argmax_right = 0.0
    for ids, _, at, subjects in episodes:
        probs = model(input_ids=torch.tensor([ids])).logits[0, at].softmax(-1)
        top = int(probs.argmax())
        p_subject += float(probs[subjects].sum())
        argmax_subject += top in subjects
        argmax_right += top == ids[at + 1]
    n = max(len(episodes), 1)
    return {"questions": len(episodes), "p_subject": round(p_subject / n, 4),
            "argmax_subject": round(argmax_subject / n, 3), "argmax_right": round(argmax_right / n, 3)}


@torch.no_grad()
def attention_to_first_name(model, episodes) -> dict[str, list[list[float]]]:
    """Mean attention, per layer and head, to the question's first name from two places: the token before that
    name's first copy (in the first <think>: a copy the model makes) and the answer position. Answer-first
    episodes make both the same name. The model must return attentions (attn_implementation="eager")."""
    copy = torch.zeros(model.config.num_hidden_layers, model.config.num_attention_heads)
    answer = torch.zeros_like(copy)
    for ids, _, at, subjects in episodes:
        named = ids.index(subjects[0])
        before_copy = ids.index(subjects[0], named + 1) - 1
        for layer, weights in enumerate(model(input_ids=torch.tensor([ids]), output_attentions=True).attentions):
            copy[layer] += weights[0, :, before_copy, named]
            answer[layer] += weights[0, :, at, named]
    n = max(len(episodes), 1)
    table = lambda t: [[round(float(v), 2) for v in row] for row in t / n]  # noqa: E731
    return {"from_before_first_copy": table(copy), "from_answer": table(answer)}


def fit(model, tokenizer, episodes, steps: int, lr: float) -> None:
    """Adam on the episodes as one batch, the warm start's loss (written tokens, value words weighted)."""
    ids, mask = padded_rows([(episode_ids, episode_mask) for episode_ids, episode_mask, *_ in episodes],
                            tokenizer.pad_token_id or 0)
    weights = (mask == 1) * written_token_weights(tokenizer, WarmstartConfig(), model.config.vocab_size)[ids]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = masked_lm_loss(model(input_ids=ids).logits, ids, weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seed", type=int, default=2026, help="evaluation world seed")
    parser.add_argument("--level", type=int, default=1, help="world level")
    parser.add_argument("--questions", type=int, default=100, help="test comparisons measured")
    parser.add_argument("--fit", type=int, default=0, metavar="STEPS", help="then train on pretraining comparisons")
    parser.add_argument("--fit-episodes", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--answer-first", action="store_true",
                        help="every comparison (test and fitted) names its answer first (--compare-answer-first)")
    parser.add_argument("--quote", choices=("none", "compare"), default="none",
                        help="the answer turn's style (warmstart --quote); compare: measured at the reasoning's choice")
    parser.add_argument("--attention", action="store_true",
                        help="also the attention to the question's first name, per layer and head (use --answer-first)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for path in args.models:
        model, tokenizer = load_model(path)
        test = comparison_episodes(WorldConfig(seed=args.seed, level=args.level), tokenizer, args.questions,
                                   args.answer_first, args.quote)
        report = {"model": path, "test": subject_rates(model, test)}
        if args.attention:
            model.set_attn_implementation("eager")
            report["attention"] = attention_to_first_name(model, test)
        if args.fit:
            train = comparison_episodes(WorldConfig(seed=0, pretrain_index=999_000, level=args.level), tokenizer,
                                        args.fit_episodes, args.answer_first, args.quote)
            before = subject_rates(model, train)
            fit(model, tokenizer, train, args.fit, args.lr)
            report |= {"fitted_before": before, "fitted_after": subject_rates(model, train),
                       "test_after_fit": subject_rates(model, test),
                       "fit": {"steps": args.fit, "lr": args.lr, "episodes": len(train)}}
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
