"""The run's tables as formatted cells: the viewer's page and the markdown report print these very strings.

Each table is {"title", "columns": [...], "rows": [[cell, ...], ...]}; a value not there (a phase still running,
a figure that phase kind has none of) is "-".
"""

from __future__ import annotations

from searche1.view.rundir import RunDir

DASH = "-"


def _num(value, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def _int(value) -> str:
    return DASH if value is None else f"{int(round(value)):,}"


def em_table(overview: dict) -> dict:
    names = overview["benchmarks"]
    # the formats of summary.md's table (evolve.phase_table), so the two agree cell for cell
    rows = [[r["phase"], *(_num(r["em"][b], 3) for b in names), _num(r["average_em"], 3), _num(r["searches"], 2),
             _num(r["generated_tokens"], 0),
             DASH if r["answers_changed"] is None else f"{r['answers_changed']:.0%}"] for r in overview["phases"]]
    return {"title": "Greedy EM per phase", "columns": ["phase", *names, "average", "searches", "tokens/answer",
                                                        "answers changed"], "rows": rows}


def cost_table(overview: dict) -> dict:
    rows = [[r["phase"], r["kind"], _num(r["train_seconds"], 0), _num(r["eval_seconds"], 0), _int(r["rollouts"]),
             _int(r["train_tokens"]), _num(r["train_tokens_per_second"], 0), _int(r["steps"]), _int(r["pairs"])]
            for r in overview["phases"]]
    return {"title": "Cost per phase", "columns": ["phase", "kind", "train s", "eval s", "rollouts",
                                                   "tokens generated", "tokens generated / train s", "GRPO steps",
                                                   "OFSD pairs"], "rows": rows}


def pairs_table(run: RunDir) -> dict:
    """Per OFSD phase: how many questions had a pair, and what the pairs were like (from its ofsd/ records and
    pairs.jsonl)."""
    rows = []
    for p in run.phases:
        if p.kind != "ofsd":
            continue
        mined = next((r for r in run.metrics(p) if "pairs" in r), {})
        pairs = run.pairs(p.key)
        kls = [r["student_kl"] for r in pairs if r.get("student_kl") is not None]
        rows.append([p.name, _int(mined.get("questions")), _int(len(pairs)), _num(mined.get("paired_fraction"), 3),
                     _num(mined.get("reference_tokens"), 1), _num(mined.get("student_tokens"), 1),
                     _num(sum(kls) / len(kls) if kls else None, 3)])
    return {"title": "OFSD pairs", "columns": ["phase", "pool questions", "pairs", "paired fraction",
                                               "reference tokens", "student tokens", "mean student KL"],
            "rows": rows}


def run_tables(run: RunDir) -> list[dict]:
    overview = run.overview()
    tables = [em_table(overview), cost_table(overview)]
    pairs = pairs_table(run)
    return tables + ([pairs] if pairs["rows"] else [])


def markdown(table: dict) -> str:
    lines = ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"
