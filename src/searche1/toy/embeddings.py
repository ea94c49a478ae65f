"""The toy model's embedding rows, edited between runs: a new vocabulary's rows (transplant), whole-year tokens
rebuilt in the names' subspace (years from names) and kept there (frozen rows). Why years need this:
docs/warmstart.md, "Year answers are not read" and "Years written digit by digit"."""

from __future__ import annotations

import random

import torch

from searche1.data.toyworld.names import NAME_POOL, YEARS
from searche1.data.toyworld.tokenizer import value_token_ids


@torch.no_grad()
def transplant_embeddings(model, old_vocab: dict[str, int], tokenizer) -> int:
    """Give `model` the vocabulary of `tokenizer`: a token whose string `old_vocab` has keeps its embedding (and
    output row), a new one is drawn from a normal with the old rows' mean and covariance (seeded). Returns how
    many tokens were kept.

    Why not all at the mean: identical new rows stay identical to each other, since in a passage the model cannot
    tell them apart and in an answer no gradient separates them (a year's century and tail pieces started at the
    mean still had a mean pairwise cosine of 0.99 after 400 steps, docs/warmstart.md)."""
    def tables():  # the output table too when it is not the input one
        return [model.get_input_embeddings()] + ([] if model.config.tie_word_embeddings
                                                 else [model.get_output_embeddings()])

    old = [t.weight.detach().clone() for t in tables()]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    pairs = [(i, old_vocab[s]) for s, i in tokenizer.get_vocab().items() if s in old_vocab]
    new_ids, old_ids = (torch.tensor(ids) for ids in zip(*pairs))
    generator = torch.Generator().manual_seed(0)
    for table, weight in zip(tables(), old):
        centered = weight - weight.mean(0)
        spread = torch.linalg.cholesky(centered.T @ centered / len(weight)
                                       + 1e-6 * torch.eye(weight.shape[1]))
        noise = torch.randn(table.weight.shape, generator=generator, dtype=weight.dtype)
        table.weight[:] = weight.mean(0) + noise @ spread.T
        table.weight[new_ids] = weight[old_ids]
    return len(pairs)


def frozen_year_rows(model, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole-year tokens' ids and a copy of their embedding rows, to put back after each optimizer step."""
    ids = torch.tensor(value_token_ids(tokenizer, list(YEARS)), dtype=torch.long)
    if len(ids) == 0:
        raise ValueError("freeze_years: the tokenizer has no whole-year tokens (--digit-years / --year-pairs?)")
    return ids, model.get_input_embeddings().weight[ids].detach().clone()


@torch.no_grad()
def restore_rows(model, ids: torch.Tensor, rows: torch.Tensor) -> None:
    model.get_input_embeddings().weight[ids] = rows  # tied: the output rows too


def spaced_year_and_name_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Ids of the whole-year tokens with their space (" 1333") and of the pool names with theirs, in list order."""
    vocab = tokenizer.get_vocab()
    return ([vocab[" " + y] for y in YEARS if " " + y in vocab],
            [vocab[" " + n] for n in NAME_POOL if " " + n in vocab])


@torch.no_grad()
def years_from_names(model, tokenizer, gamma: float, seed: int = 0) -> int:
    """Rebuild each whole-year token with its space (" 1333") as the normalised sum of two distinct pool names'
    embeddings (a pair per year, drawn with `seed`) plus `gamma` times the years' old mean direction, at the old
    rows' mean norm. Returns how many years were rebuilt.

    Why: trained from their own rows, 1106 rare year tokens share nearly one direction and are not read; the copy
    the model learned is of names, and it carries to years placed among them (docs/warmstart.md, s9-ny1)."""
    years, names = spaced_year_and_name_ids(tokenizer)
    if not years or len(names) < 2:
        raise ValueError("years from names: the tokenizer needs spaced whole-year and name tokens (--spaced-values, "
                         "not --digit-years / --year-pairs)")
    unit = torch.nn.functional.normalize
    weight = model.get_input_embeddings().weight  # tied: the output rows too
    old = weight[years].clone()
    pairs = random.Random(seed).sample([(a, b) for a in names for b in names if a < b], len(years))
    built = torch.stack([unit(weight[a] + weight[b], dim=-1) for a, b in pairs])
    weight[years] = unit(built + gamma * unit(old.mean(0), dim=-1), dim=-1) * old.norm(dim=-1).mean()
    return len(years)
