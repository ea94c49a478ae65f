"""`searche1 eval`: a model on QA files, EM per benchmark (parser and handler)."""

from __future__ import annotations

from searche1.cli.common import COMMANDS, add_config_args, pick


def add_parsers(sub) -> None:
    h = COMMANDS

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
    add_config_args(p)
    p.set_defaults(run=cmd_eval)


def cmd_eval(args) -> int:
    from searche1.config import load_config, to_dict
    from searche1.eval import evaluate, load_benchmarks, markdown_table, write_eval_report
    from searche1.retrieval.client import client_from_config
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.select import check_backend, generation_backend
    from searche1.rollout.engine import EngineLimits
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout)  # (vLLM ignores --device and --dtype: the engine is bf16 on the GPU)
    target = pick(args.index, cfg.retrieval.index)
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
    report, trajectories = evaluate(benchmarks, backend, tokenizer, client,
                                    EngineLimits.from_config(r, cfg.retrieval), sampling, args.samples, args.batch_size,
                                    cfg.seed)
    report.update(model=args.model, index=target, samples=args.samples, config=to_dict(cfg))
    traj_path = write_eval_report(args.out, report, trajectories)
    print(markdown_table(report))
    print(f"wrote {args.out} and {traj_path}")
    return 0
