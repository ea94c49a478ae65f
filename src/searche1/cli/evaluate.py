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
    p.add_argument("--limit", type=int, default=None, help="first N questions of each benchmark (N >= 1)")
    p.add_argument("--samples", type=int, default=1, help="samples per question (1 = greedy; more = sampled "
                                                          "with rollout.temperature / top_p)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="questions in flight at once (x --samples); a finished one is replaced at the next turn")
    p.add_argument("--max-failed-share", type=float, default=None, metavar="S",
                   help="with retrieval.on_failure=skip: when more than this share of the samples lost their search "
                        "(retriever down), exit 2 and write nothing, since the figures would not be the model's "
                        "(default retrieval.max_failed_share: 0.1)")
    p.add_argument("--device", default="cpu", help="torch device for the model: cpu (default), cuda, cuda:1")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on a GPU that supports it, else float32), float32, "
                                                   "bfloat16 or float16")
    add_config_args(p)
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from searche1.config import load_config, to_dict
    from searche1.eval import (
        evaluate,
        failed_samples,
        load_benchmarks,
        markdown_table,
        trajectories_path,
        write_eval_report,
    )
    from searche1.fileio import check_writable
    from searche1.models import check_model_source
    from searche1.retrieval.client import check_failures, client_from_config
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.select import check_backend, generation_backend
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout)  # (vLLM ignores --device and --dtype: the engine is bf16 on the GPU)
    target = pick(args.index, cfg.retrieval.index)
    if not target:
        raise ValueError("no index: pass --index DIR|URL or set retrieval.index")
    for flag, value in (("--samples", args.samples), ("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    max_failed_share = pick(args.max_failed_share, cfg.retrieval.max_failed_share)
    if not 0 <= max_failed_share <= 1:
        raise ValueError(f"--max-failed-share must be in [0, 1], got {max_failed_share}")
    check_writable(args.out, "report")  # now, not after the whole run
    check_writable(trajectories_path(args.out), "trajectories file")
    benchmarks = load_benchmarks(args.data, args.limit)
    client = client_from_config(cfg.retrieval, target)
    ensure_made(args.model)
    check_model_source(args.model)
    backend, tokenizer = generation_backend(cfg.rollout, args.model, args.device, args.dtype, cfg.seed)
    r = cfg.rollout
    sampling = (SamplingParams(greedy=True) if args.samples == 1
                else SamplingParams(r.temperature, r.top_p, r.top_k))
    report, trajectories = evaluate(benchmarks, backend, tokenizer, client, r, sampling, args.samples,
                                    args.batch_size, cfg.seed, on_retrieval_failure=cfg.retrieval.on_failure)
    cfg.retrieval.index = target  # the index used, not the preset's (often empty) default
    report.update(model=args.model, index=target, samples=args.samples, config=to_dict(cfg))
    print(markdown_table(report))
    check_failures(*failed_samples(report), cfg.retrieval.on_failure, max_failed_share, f"the evaluation of {target}")
    traj_path = write_eval_report(args.out, report, trajectories)
    print(f"wrote {args.out} and {traj_path}")
    return 0
