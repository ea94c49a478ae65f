"""Named models that training makes: made once, by the command that names them, before anything loads them.

models.py resolves a name to its folder and loads it, and never trains; a model defined by a training recipe
(the warm start) is made here, above both, so that loading and training do not import each other.
"""

from __future__ import annotations

from searche1.models import SMOLLM2, SMOLLM2_SEARCHER, cache_dir, made_once

SMOLLM2_SEARCHER_RECIPE = {"max_steps": 32, "lr": 5e-5, "loss_on_observations": False, "seed": 0}
"""The format warm-up that makes smollm2-135m-searcher from smollm2-135m (seeded: the same folder on any
machine)."""


def ensure_made(*names: str | None) -> None:
    """Make each named model among `names` that training defines and that is not in the cache yet (others,
    paths and None are left alone). Processes started together (torchrun) make it once; the others wait."""
    if SMOLLM2_SEARCHER not in names:
        return
    folder = cache_dir() / SMOLLM2_SEARCHER
    with made_once(folder, "warmstart.json") as missing:
        if missing:
            from searche1.toy.warmstart import WarmstartConfig, warmstart

            print(f"making {SMOLLM2_SEARCHER} in {folder} (once: a format warm-up of {SMOLLM2}, "
                  f"{SMOLLM2_SEARCHER_RECIPE['max_steps']} steps, ~15 minutes on 2 CPU cores)", flush=True)
            warmstart(folder, WarmstartConfig(minutes=600, base_model=SMOLLM2, **SMOLLM2_SEARCHER_RECIPE))
