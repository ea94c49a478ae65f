"""The model card (README.md) of a warm-start folder: what it is, the commands that make it again, its figures."""

from __future__ import annotations

import textwrap

from searche1.data.toyworld.generator import MAX_LEVEL


def model_card(report: dict) -> str:
    """README.md of a warm-start folder: what it is, the command that makes it again, and its figures."""
    cfg = report["config"]
    runs, parent = [], report
    while parent is not None:  # this run, preceded by the runs it continued
        runs.insert(0, parent)
        parent = parent.get("parent")
    outs = ["DIR"] + [f"DIR{k + 1}" for k in range(1, len(runs))]
    commands = "\n".join(f"    {_command(r['config'], outs[k], outs[k - 1] if k else None)}"
                         for k, r in enumerate(runs))
    durations = "; ".join(f"{outs[k]}: {r['steps']} steps, {r['tokens']} tokens, {r['seconds']:.0f} s"
                          for k, r in enumerate(runs))
    last = report["probes"][-1] if report["probes"] else {}
    probes = ", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.endswith(("entity", "answer")))
    first_loss, last_loss = report["loss_first_last_10"]
    if cfg.get("base_model"):
        return f"""# {cfg['base_model']} after a searche1 format warm-up

{report['parameters'] / 1e6:.1f}M parameters, fine-tuned for {report['steps']} steps ({report['tokens']} tokens,
{report['seconds']:.0f} s) on demonstrations of the toy world's scripted searcher (pretraining worlds only), so that
it emits the Search-R1 protocol's tags. Made with:

    {_command(cfg, "DIR", None)}

Loss (mean of the first / last 10 steps): {first_loss:.3f} / {last_loss:.3f}. Licence: that of {cfg['base_model']}.
"""
    follows = any(r["config"].get("privileged_per_world") for r in runs)
    drills = any(r["config"].get(k) for r in runs for k in ("drills_per_world", "copy_drills_per_world"))
    schedule = ("the schedule follows steps where --max-steps is given, so such a run does not depend on the "
                "machine's speed" if any(r["config"].get("max_steps") for r in runs) else
                "the schedule follows the wall clock, so a rerun on another machine takes other steps")
    about = textwrap.fill(
        f"A {report['parameters'] / 1e6:.1f}M-parameter Qwen2-architecture causal LM with the toy tokenizer. It stands "
        "in for a pretrained LLM in the toy world: it was trained on the Search-R1 protocol and on reading retrieved "
        "passages, from demonstrations of an imperfect scripted searcher"
        + (" and from reading and copy drills" if drills else "")
        + (" and from following a worked solution shown in its prompt (OFSD's teacher context)" if follows else "")
        + f" on pretraining worlds only (namespace `pretrain:{cfg['world_seed']}:*`, level "
        f"{cfg.get('world_level', MAX_LEVEL)}), never on an evaluation world. How well it does: docs/warmstart.md "
        "of searche1.", width=116)
    return f"""# Toy base policy (searche1 warm start)

{about}

Made with (2 CPU threads; {schedule}):

{commands}

- {durations} (the last: {report['trained_tokens']} tokens trained, {report['tokens_per_second']} tokens/s)
- loss (mean of the first / last 10 steps): {first_loss:.3f} / {last_loss:.3f}
- last held-out probe (teacher-forced, step {last.get('step', '-')}): {probes or '-'}

Full configuration and every probe: `warmstart.json`. Licence: as searche1.
"""


def _command(cfg: dict, out: str, parent_out: str | None) -> str:
    """The `searche1 warmstart` command line that reproduces a run's configuration (its non-default flags)."""
    flags = f" --max-steps {cfg['max_steps']}" if cfg.get("max_steps") else ""
    flags += "" if cfg.get("loss_on_observations", True) else " --no-loss-on-observations"
    flags += f" --lr {cfg['lr']:g}" if cfg.get("lr", 2e-3) != 2e-3 else ""
    flags += f" --first-world {cfg['first_world']}" if cfg.get("first_world") else ""
    flags += " --restate-need" if cfg.get("restate_need") else ""
    flags += f" --level {cfg['world_level']}" if cfg.get("world_level", MAX_LEVEL) != MAX_LEVEL else ""
    flags += f" --quote {cfg['quote_style']}" if cfg.get("quote_style", "sentence") != "sentence" else ""
    flags += f" --max-hops {cfg['max_hops']}" if cfg.get("max_hops") is not None else ""
    if cfg.get("set_weights"):
        flags += " --set-weights " + ",".join(f"{name}={w:g}" for name, w in cfg["set_weights"].items())
    flags += " --compare-in-one-search" if cfg.get("compare_in_one_search") else ""
    flags += " --compare-answer-first" if cfg.get("compare_answer_first") else ""
    flags += f" --misread {cfg['misread']:g}" if cfg.get("misread", 0.1) != 0.1 else ""
    flags += f" --compare-repeat {cfg['compare_repeat']:g}" if cfg.get("compare_repeat", 0.1) != 0.1 else ""
    flags += " --spaced-values" if cfg.get("spaced_values") else ""
    flags += " --digit-years" if cfg.get("digit_years") else ""
    flags += " --year-pairs" if cfg.get("year_pairs") else ""
    flags += f" --years-from-names {cfg['years_from_names']:g}" if cfg.get("years_from_names") is not None else ""
    flags += " --freeze-years" if cfg.get("freeze_years") else ""
    flags += f" --digit-weight {cfg['digit_weight']:g}" if cfg.get("digit_weight", 1.0) != 1.0 else ""
    flags += " --question-only-prompt" if cfg.get("question_only_prompt") else ""
    for key, flag, default in (("questions_per_world", "--episodes", 8), ("drills_per_world", "--drills", 8),
                               ("copy_drills_per_world", "--copy-drills", 4),
                               ("induction_drills_per_world", "--induction-drills", 0),
                               ("privileged_per_world", "--privileged-episodes", 0)):
        flags += f" {flag} {cfg[key]}" if cfg.get(key, default) != default else ""
    flags += f" --induction-words {cfg['induction_words']}" if cfg.get("induction_words", "names") != "names" else ""
    flags += " --induction-repeat" if cfg.get("induction_repeat") else ""
    hide = cfg.get("privileged_hide_answer", 0.0)
    flags += f" --privileged-hide-answer {hide:g}" if hide else ""
    flags += f" --init-from {parent_out}" if parent_out else ""
    flags += f" --base-model {cfg['base_model']}" if cfg.get("base_model") else ""
    return f"searche1 --threads 2 warmstart --out {out} --minutes {cfg['minutes']:g}{flags} --seed {cfg['seed']}"
