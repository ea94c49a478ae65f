"""The recipes' shared kit (train/kit.py): LR schedule, per-sample seeds, optimizer, NaN guard, run guard."""

import math

import pytest
import torch


def test_lr_factor_warmup_then_constant_or_cosine():
    from searche1.train.kit import lr_factor

    assert [lr_factor(s, 10, 0.3, "constant") for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert lr_factor(9, 10, 0.0, "constant") == 1.0
    assert lr_factor(0, 10, 0.0, "cosine") == 1.0 and lr_factor(10, 10, 0.0, "cosine") == pytest.approx(0.1)


def test_cosine_decay_is_half_a_cosine_to_a_tenth_bit_for_bit():
    from searche1.train.kit import cosine_decay

    for frac in (0.0, 0.1, 1 / 3, 0.5, 0.99, 1.0):  # the formula the warm start and GRPO both wrote out
        assert cosine_decay(frac) == 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))
    assert cosine_decay(0.0) == 1.0 and cosine_decay(7.0) == cosine_decay(1.0) == pytest.approx(0.1)


def test_sample_seeds_fit_torch_for_any_run_seed():
    from searche1.train.kit import sample_seed

    for seed in (0, 2_000_000, 20250101, 2**40):
        torch.Generator().manual_seed(sample_seed(seed, 1005, 511, 4))  # no overflow
    assert len({sample_seed(0, s, p, j) for s in range(3) for p in range(4) for j in range(5)}) == 60


def test_adamw_trains_what_requires_grad_and_decays_matrices_only_when_asked():
    from searche1.train.kit import adamw

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model[1].weight.requires_grad_(False)
    optimizer, trainable = adamw(model, 1e-3, 0.1)
    assert trainable == [model[0].weight, model[0].bias, model[1].bias]
    (group,) = optimizer.param_groups
    assert group["params"] == trainable and group["weight_decay"] == 0.1
    optimizer, _ = adamw(model, 1e-3, 0.1, betas=(0.9, 0.95), decay_matrices_only=True)
    decay, no_decay = optimizer.param_groups
    assert decay["params"] == [model[0].weight] and decay["weight_decay"] == 0.1
    assert no_decay["params"] == [model[0].bias, model[1].bias] and no_decay["weight_decay"] == 0.0
    assert decay["betas"] == (0.9, 0.95)


def test_skip_guard_stops_after_three_skipped_steps_in_a_row():
    from searche1.runtime import TrainingDiverged
    from searche1.train.kit import MAX_SKIPPED_IN_A_ROW, SkipGuard

    guard = SkipGuard("GRPO", "lower grpo.lr")
    # a step that was not skipped resets the count
    for step, skipped in enumerate([True, True, False, True, True], start=1):
        guard.step(step, skipped)
    with pytest.raises(TrainingDiverged, match=f"GRPO step 6: the loss or gradient was NaN/inf in "
                                               f"{MAX_SKIPPED_IN_A_ROW} steps in a row .*; lower grpo.lr$"):
        guard.step(6, True)


def test_refuse_existing_run(tmp_path):
    from searche1.train.kit import refuse_existing_run

    refuse_existing_run(tmp_path / "new", "metrics.jsonl")
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
        refuse_existing_run(tmp_path, "metrics.jsonl")


def _imports(path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions included); `from a.b import
    c` counts as both a.b and a.b.c (c may be a module)."""
    import ast

    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
         for a in n.names} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


RECIPES = {"searche1.train.grpo": "train/grpo.py", "searche1.train.ofsd": "train/ofsd.py", "searche1.toy": "toy"}
"""Each recipe (module or package) and its source under src/searche1/: none imports another."""


def _within(module: str, recipe: str) -> bool:
    return module == recipe or module.startswith(recipe + ".")


def _recipe_imports(src) -> list[tuple[str, str]]:
    """(file, recipe) for every recipe that another recipe's source file imports."""
    found = set()
    for recipe, where in RECIPES.items():
        files = [src / where] if where.endswith(".py") else sorted((src / where).glob("*.py"))
        assert files and all(f.is_file() for f in files), where  # a rule over a file that moved checks nothing
        for path in files:
            found |= {(str(path.relative_to(src)), other) for m in _imports(path)
                      for other in RECIPES if other != recipe and _within(m, other)}
    return sorted(found)


def test_losses_import_nothing_from_train_and_recipes_not_each_other():
    from pathlib import Path

    import searche1

    src = Path(searche1.__file__).parent
    for path in (src / "losses").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("searche1.train")], path
    assert _recipe_imports(src) == []
    assert not [m for m in _imports(src / "models.py") if m.startswith(("searche1.train", "searche1.toy"))]


def test_the_recipe_rule_catches_a_recipe_importing_another(tmp_path):
    """The check above on a planted tree: each way of importing another recipe is found, a shared module whose
    name starts like a recipe's (train/grpo_update.py) is not."""
    (tmp_path / "train").mkdir()
    (tmp_path / "toy").mkdir()
    (tmp_path / "train" / "grpo.py").write_text("from searche1.train.grpo_update import policy_update\n"
                                                "from searche1.train.kit import adamw\n"
                                                "def f():\n    from searche1.train import ofsd\n")
    (tmp_path / "train" / "ofsd.py").write_text("import searche1.toy.warmstart\n")
    (tmp_path / "toy" / "warmstart.py").write_text("from searche1.toy.card import model_card\n")
    (tmp_path / "toy" / "card.py").write_text("from searche1.train.grpo import step_prompts\n")
    assert _recipe_imports(tmp_path) == [("toy/card.py", "searche1.train.grpo"),
                                         ("train/grpo.py", "searche1.train.ofsd"),
                                         ("train/ofsd.py", "searche1.toy")]
