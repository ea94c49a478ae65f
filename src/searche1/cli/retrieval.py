"""`searche1 index`, `serve` and `search`: indexes and the retrieval server (parsers and handlers)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from searche1.cli.common import COMMANDS, add_config_args, pick


def add_parsers(sub) -> None:
    h = COMMANDS

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
    p.add_argument("--batch-size", type=int, default=64, help="dense: passages per encoder batch (default 64)")
    p.add_argument("--device", default=None, help="dense encoder device (cpu, cuda)")
    add_config_args(p)
    p.set_defaults(handler=cmd_index)

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
    add_config_args(p)
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("search", help=h["search"], description=h["search"])
    p.add_argument("--index", default=None, help="index directory or http://host:port of a server "
                                                  "(default retrieval.index)")
    p.add_argument("--topk", type=int, default=None, help="default retrieval.topk: 3")
    p.add_argument("--json", action="store_true", help="print one JSON line per query: its documents and their "
                                                        "scores")
    add_config_args(p, positional=False)
    p.add_argument("queries", nargs="+", help="one or more queries (quote each one)")
    p.set_defaults(handler=cmd_search)


def cmd_index(args) -> int:
    from searche1.config import load_config
    from searche1.retrieval.index import IndexOptions, build_index

    r = load_config(args.preset, args.overrides).retrieval
    opts = IndexOptions(pick(args.method, r.method), pick(args.model, r.model), pick(args.faiss_type, r.faiss_type),
                        args.batch_size, args.device, args.faiss_index, args.query_prefix, args.passage_prefix)
    meta = build_index(args.corpus, args.out, opts)
    print(f"indexed {meta['n_docs']} documents ({meta['method']}) into {args.out} in {meta['build_seconds']:.1f}s")
    return 0


def cmd_serve(args) -> int:
    from searche1.config import load_config
    from searche1.retrieval.pyserini_bm25 import PyseriniUnavailable
    from searche1.retrieval.server import ServerLimits, ServeSource, serve, serve_workers
    from searche1.runtime import check_port_free, is_loopback

    cfg = load_config(args.preset, args.overrides)
    host, port = pick(args.host, cfg.server.host), pick(args.port, cfg.server.port)
    limits = ServerLimits(default_topk=pick(args.topk, cfg.retrieval.topk), max_queries=cfg.server.max_queries,
                          max_query_chars=cfg.server.max_query_chars, max_body_bytes=cfg.server.max_body_bytes)
    if not 1 <= limits.default_topk <= 100:
        raise ValueError(f"--topk must be in 1..100, got {limits.default_topk}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {port}")
    source = ServeSource(args.index, args.faiss_index, args.pyserini_index, args.corpus, args.model,
                         args.query_prefix, args.device)
    source.check(args.workers)
    check_port_free(host, port)  # before seconds of loading, not after "serving ..."
    if not is_loopback(host):
        print(f"warning: binding {host}: the retriever is reachable from other machines", file=sys.stderr)
    where = f"on http://{host}:{port} (POST /retrieve, GET /health)"
    if args.workers > 1:
        info, name = source.describe_index()
        print(f"serving {name} ({info['n_docs']} docs) {where}, {args.workers} workers", flush=True)
        serve_workers(args.index, args.workers, host, port, limits, args.device)
        return 0
    print(source.opening(cfg.retrieval.model), flush=True)
    try:  # configure_threads resolved the thread count into OMP_NUM_THREADS
        retriever, info, name = source.open(cfg.retrieval.model, int(os.environ.get("OMP_NUM_THREADS", 1)))
    except PyseriniUnavailable as e:
        print(f"searche1 serve: error: {e}", file=sys.stderr)
        return 2
    serve(retriever, host, port, limits, info=info, ready=f"serving {name} ({info['n_docs']} docs) {where}, 1 worker")
    return 0


def cmd_search(args) -> int:
    from searche1.config import load_config
    from searche1.protocol import information_block
    from searche1.retrieval.client import client_from_config

    r = load_config(args.preset, args.overrides).retrieval
    target = pick(args.index, r.index)
    if not target:
        raise ValueError("no index: pass --index DIR|URL or set retrieval.index")
    if Path(target).is_dir():  # the first search of a process compiles BM25 scoring (numba): seconds of silence
        from searche1.retrieval.base import read_meta

        what = "loading its encoder" if read_meta(target).get("method") == "dense" else \
            "compiling BM25 search on first use (numba: a few seconds)"
        print(f"searche1 search: opening {target}, {what}", file=sys.stderr, flush=True)
    client = client_from_config(r, target, args.topk)
    results = client.retrieve_scored(args.queries)
    for q, scored in zip(args.queries, results):
        docs = [doc for doc, _ in scored]
        if args.json:
            print(json.dumps({"query": q, "documents": docs, "scores": [score for _, score in scored]},
                             ensure_ascii=False))
        else:
            print(f"<search> {q} </search>" + information_block(docs))
    return 0
