"""`searche1 demo`: the main job on the embedded default (the toy world).

What it runs: toy world -> BM25 index -> world checks -> what the agent would see for a few training questions
(prompt + <information> block), through the in-process client and through a live HTTP server, checked to agree ->
the shipped warm-started base policy (toy-base), evaluated -> one round of GRPO -> OFSD, each phase evaluated
(`searche1 train`'s loop, sized by DEMO_SIZES to fit ~15 minutes on 2 CPU cores) -> RUN/final/ (the last
phase's model, a plain HF folder) and the per-phase table in RUN/summary.json and RUN/evolve/summary.md.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from searche1.config import dump_config, load_config, save_config, to_dict
from searche1.data.toyworld.checks import check_world, format_check_report
from searche1.data.toyworld.generator import generate_world, write_world
from searche1.fileio import write_json
from searche1.metrics import MetricsWriter
from searche1.protocol import information_block, make_prompt_text
from searche1.retrieval.client import HttpClient, InProcessClient
from searche1.retrieval.index import IndexOptions, build_index, open_index
from searche1.runtime import seed_everything
from searche1.train.evolve import phase_table, run_evolve, what_changed


def _serve_in_thread(retriever, port: int = 0):
    """Start uvicorn on a free loopback port in a daemon thread; return (server, url)."""
    import uvicorn

    from searche1.retrieval.server import allowed_hosts_for, make_app

    app = make_app(retriever, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(300):
        if server.started:
            break
        time.sleep(0.02)
    sock = server.servers[0].sockets[0]
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


DEMO_SIZES = ["evolve.rounds=1", "evolve.grpo_steps=80", "evolve.eval_limit=40", "ofsd.pool_questions=120",
              "ofsd.n_samples=5"]
"""The training phases' sizes in the demo (before the user's overrides, which win): one round on 2 CPU cores, its
GRPO phase long enough to show learning (OFSD after a second GRPO round costs EM on the toy: docs/results.md)."""


def run_demo(out: str, preset: str | None = "toy", overrides: list[str] | None = None) -> int:
    console = Console(soft_wrap=True)  # long lines (prompt, passages) stay whole, as a model sees them
    cfg = load_config(preset, DEMO_SIZES + list(overrides or []))
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    seed_everything(cfg.seed)
    console.print(f"[bold]searche1 demo[/bold] -> {run}  (preset {preset}, world seed {cfg.world.seed})")
    console.print(f"resolved config ({run / 'config.yaml'}):\n" + dump_config(cfg), markup=False, highlight=False)
    timings: dict[str, float] = {}

    with MetricsWriter(run / "metrics.jsonl", append=False) as metrics:
        t0 = time.perf_counter()
        world = generate_world(cfg.world)
        write_world(world, run / "world")
        timings["world"] = time.perf_counter() - t0
        console.print(f"[1/5] world: {len(world.docs)} passages, {len(world.train)} train questions, "
                      f"{sum(len(v) for v in world.tests.values())} test questions ({timings['world']:.1f}s)")

        t0 = time.perf_counter()
        r = cfg.retrieval
        meta = build_index(run / "world" / "corpus.jsonl", run / "index",
                           IndexOptions(r.method, r.model, r.faiss_type), show_progress=False)
        retriever = open_index(run / "index")
        timings["index"] = time.perf_counter() - t0
        console.print(f"[2/5] {meta['method']} index over {meta['n_docs']} passages ({timings['index']:.2f}s)")

        t0 = time.perf_counter()
        report = check_world(world, topk=cfg.retrieval.topk)
        timings["checks"] = time.perf_counter() - t0
        console.print("[3/5] world checks\n" + format_check_report(report))
        metrics.log(_flat_numbers(report), step=0, prefix="world")

        console.print("[4/5] what the agent sees: prompt, then one search of the question text")
        questions = [ex.question for ex in world.train[:3]]
        local = InProcessClient(retriever, cfg.retrieval.topk).retrieve(questions)
        server, thread, url = _serve_in_thread(retriever)
        try:
            remote = HttpClient(url, topk=cfg.retrieval.topk).retrieve(questions)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        if remote != local:
            raise RuntimeError("HTTP and in-process retrieval disagree")
        ex = world.train[0]
        console.print(make_prompt_text(ex.question) + f"<search> {ex.question} </search>"
                      + information_block(local[0]), markup=False, highlight=False)
        console.print(f"golden answers: {ex.golden_answers}; HTTP server at {url} returned the same documents "
                      f"for {len(questions)} questions")
        console.print(f"[5/5] training: {cfg.grpo.model} evaluated, then {cfg.evolve.rounds} rounds of GRPO "
                      f"({cfg.evolve.grpo_steps or cfg.grpo.steps} steps) -> OFSD (pool of "
                      f"{cfg.ofsd.pool_questions} x {cfg.ofsd.n_samples}), each evaluated on "
                      f"{cfg.evolve.eval_limit or 'all'} questions per test set")
        t0 = time.perf_counter()
        rows = run_evolve(cfg, run / "evolve", resume=True, log=lambda msg: console.print(msg, markup=False,
                                                                                          highlight=False))
        _publish_final(Path(rows[-1]["model"]), run / "final")
        timings["training"] = time.perf_counter() - t0
        metrics.log({f"{k}_seconds": round(v, 3) for k, v in timings.items()}, step=0, prefix="time")

    console.print(phase_table(rows) + what_changed(rows), markup=False, highlight=False)
    summary = {"config": to_dict(cfg), "world_checks": report, "seconds": timings, "phases": rows}
    write_json(run / "summary.json", summary)
    table = Table(title="demo summary")
    for col in ("phase", "seconds"):
        table.add_column(col)
    for k, v in timings.items():
        table.add_row(k, f"{v:.1f}")
    console.print(table)
    console.print(f"wrote {run}/summary.json (the per-phase table), final/ (the last phase's model), evolve/ (each "
                  "phase: checkpoints, pool, pairs, evaluations, phases.png), metrics.jsonl, config.yaml, world/, "
                  "index/")
    console.print(f"see what the agent does: searche1 view {run}  (a web page on 127.0.0.1:8765); "
                  f"searche1 report {run} writes the same tables and figures as markdown", markup=False)
    return 0


def _publish_final(model_dir: Path, final: Path) -> None:
    """Copy the last phase's model to RUN/final as a plain HF folder (weights, config, tokenizer), atomically; a
    LoRA checkpoint is written with its adapter merged."""
    import shutil

    from searche1.fileio import atomic_dir
    from searche1.models import is_adapter_folder, load_model

    with atomic_dir(final, marker="config.json", what="final model") as tmp:
        if is_adapter_folder(model_dir):
            model, tokenizer = load_model(str(model_dir), "cpu", "float32")
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            return
        for f in model_dir.iterdir():
            if f.is_file() and f.name not in ("optimizer.pt", "trainer_state.json", "checksums.json"):
                shutil.copy2(f, tmp / f.name)


def _flat_numbers(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_numbers(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out
