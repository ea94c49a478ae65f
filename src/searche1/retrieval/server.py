"""`POST /retrieve` over HTTP (FastAPI + uvicorn), request-compatible with Search-R1's retrieval server.

Concurrent requests are batched: one worker takes every request waiting in the queue and answers them with one
`search` call, so N clients cost one index pass, not N. Nothing waits for a batch to fill: a lone request is served
at once. Retrievers whose search releases the GIL (dense: torch + faiss) run on a worker thread so the event loop
keeps accepting requests; BM25 search is mostly Python and runs inline, since handing it to a thread cost more in
GIL hand-offs than it saved (measured: 1.6x more queries/s inline with 32 clients).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import os
from typing import Optional, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from searche1.retrieval.base import MAX_TOPK, Retriever
from searche1.runtime import LOOPBACK_HOSTS, is_loopback


@dataclasses.dataclass
class ServerLimits:
    default_topk: int = 3
    max_queries: int = 512  # queries in one request
    max_query_chars: int = 4096  # characters in one query
    max_body_bytes: int = 4 * 1024 * 1024
    max_batch_queries: int = 1024  # queries answered by one search call


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    queries: list[StrictStr]
    topk: Optional[StrictInt] = Field(default=None, ge=1, le=MAX_TOPK)  # strict: true is not 1
    return_scores: StrictBool = False


_RETRIEVE_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": RetrieveRequest.model_json_schema()}}},
    "responses": {"200": {"description": "top-k documents per query, best first: each `{\"id\", \"contents\"}`, "
                                         "or `{\"document\": {...}, \"score\": s}` with return_scores",
                          "content": {"application/json": {"schema": {
                              "type": "object", "required": ["result"],
                              "properties": {"result": {"type": "array", "items": {"type": "array",
                                                                                    "items": {"type": "object"}}}}}}}}},
}


class _Batcher:
    """Answers queued (queries, topk) jobs in batches: inline on the event loop, or on one worker thread when the
    retriever's search releases the GIL."""

    def __init__(self, retriever: Retriever, max_batch_queries: int):
        self.retriever, self.max_batch_queries = retriever, max_batch_queries
        self.queue: asyncio.Queue | None = None
        self.in_thread = getattr(retriever, "search_releases_gil", False)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve")
        self.worker: asyncio.Task | None = None

    def start(self):
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        if self.worker:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, queries: list[str], topk: int):
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((queries, topk, fut))
        return await fut

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            n = len(jobs[0][0])
            while not self.queue.empty() and n < self.max_batch_queries:
                jobs.append(self.queue.get_nowait())
                n += len(jobs[-1][0])
            # One search call per distinct topk (usually one): a top-3 list is not always a prefix of the top-5
            # list when scores tie, and a request must get what a lone call would return.
            by_k: dict[int, list] = {}
            for job in jobs:
                by_k.setdefault(job[1], []).append(job)
            for k, group in by_k.items():
                flat = [q for queries, _, _ in group for q in queries]
                try:
                    if self.in_thread:
                        results = await loop.run_in_executor(self.executor, self.retriever.search, flat, k)
                    else:
                        results = self.retriever.search(flat, k)
                except Exception as e:  # hand the error to each waiting request; the worker lives on
                    for *_, fut in group:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                start = 0
                for queries, _, fut in group:
                    if not fut.done():
                        fut.set_result(results[start:start + len(queries)])
                    start += len(queries)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


def _invalid(errors: list[dict]) -> JSONResponse:
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err["loc"] if x != "body")
        parts.append(f"{loc or 'body'}: {err['msg']}")
    return _error(422, "invalid request: " + "; ".join(parts))


async def _request(request: Request) -> RetrieveRequest | JSONResponse:
    """The body as a RetrieveRequest, or the 422 answer saying what is wrong with it. Parsed here rather than by
    FastAPI, which answers a body that is not UTF-8 or nested too deeply with a bare 400."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        return _error(422, "invalid request: body: send JSON with the header Content-Type: application/json (got "
                           f"{content_type or 'none'})")
    raw = await request.body()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return _error(422, f"invalid request: body: not valid UTF-8 ({e.reason} at byte {e.start})")
    except json.JSONDecodeError as e:
        return _error(422, f"invalid request: body: invalid JSON at character {e.pos} ({e.msg})")
    except RecursionError:
        return _error(422, "invalid request: body: JSON nested too deeply")
    try:
        return RetrieveRequest.model_validate(data)
    except ValidationError as e:
        return _invalid(e.errors())
    except RecursionError:
        return _error(422, "invalid request: body: JSON nested too deeply")


def make_app(retriever: Retriever, limits: ServerLimits | None = None, info: dict | None = None,
             allowed_hosts: Sequence[str] | None = None):
    """`allowed_hosts`: the Host headers answered (None = any). serve() sets the loopback names on a loopback
    bind, so that a web page the user visits cannot read the corpus through DNS rebinding."""
    limits = limits or ServerLimits()
    batcher = _Batcher(retriever, limits.max_batch_queries)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="searche1 retriever", lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {"status": "ok", **(info or {})}

    # The body is parsed by hand (_request: clear errors, Search-R1's leniencies), so the schema is stated here for
    # /docs and /openapi.json.
    @app.post("/retrieve", openapi_extra=_RETRIEVE_OPENAPI)
    async def retrieve(request: Request):
        req = await _request(request)
        if isinstance(req, JSONResponse):
            return req
        if not req.queries:
            return _error(422, "invalid request: queries: must hold at least one query")
        if len(req.queries) > limits.max_queries:
            return _error(422, f"invalid request: queries: {len(req.queries)} queries; the limit is "
                               f"{limits.max_queries} per request")
        for i, q in enumerate(req.queries):
            if len(q) > limits.max_query_chars:
                return _error(422, f"invalid request: queries.{i}: {len(q)} characters; the limit is "
                                   f"{limits.max_query_chars}")
        topk = req.topk if req.topk is not None else limits.default_topk
        results = await batcher.submit(req.queries, topk)
        body = {"result": [[hit.to_json(req.return_scores) for hit in hits] for hits in results]}
        # json.dumps directly: FastAPI's generic encoder is several times slower on large lists of dicts.
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    return _BodyLimit(app, limits.max_body_bytes, allowed_hosts)


class _BodyLimit:
    """Reject bodies over the limit: at once from Content-Length, else (chunked) while the body streams in; and
    requests whose Host header is not one of `allowed_hosts` (when given).

    Plain ASGI rather than FastAPI's @middleware("http"), which costs a task switch per request."""

    def __init__(self, app, max_bytes: int, allowed_hosts: Sequence[str] | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.allowed_hosts = None if allowed_hosts is None else set(allowed_hosts)
        self.router = app.router  # lets tests enter the lifespan as with the app itself

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.allowed_hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            name = host if host.endswith("]") else host.rsplit(":", 1)[0]  # without the port; [::1] kept whole
            if name not in self.allowed_hosts:
                return await _error(400, f"invalid Host header {host!r}: this retriever answers only "
                                         f"{', '.join(sorted(self.allowed_hosts))}")(scope, receive, send)
        too_large = _error(422, f"request body is over the limit of {self.max_bytes} bytes")
        size = headers.get(b"content-length", b"")
        if size.isdigit() and int(size) > self.max_bytes:
            return await too_large(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # FastAPI turns this into the 422 response
                raise HTTPException(422, f"request body is over the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)


_ENV_INDEX, _ENV_LIMITS, _ENV_DEVICE = "SEARCHE1_SERVE_INDEX", "SEARCHE1_SERVE_LIMITS", "SEARCHE1_SERVE_DEVICE"
_ENV_HOSTS = "SEARCHE1_SERVE_HOSTS"


def allowed_hosts_for(host: str) -> list[str] | None:
    """The Host headers a server bound to `host` answers: the loopback names on a loopback bind, else any."""
    return list(LOOPBACK_HOSTS) if is_loopback(host) else None


def app_from_env():
    """uvicorn factory for `--workers N`: each worker process opens the index itself (pages of the mmap'd index
    files are shared between them by the OS)."""
    retriever, info, _ = ServeSource(index=os.environ[_ENV_INDEX], device=os.environ.get(_ENV_DEVICE) or None).open(
        default_model="", threads=1)  # an index directory holds its own model; threads only concern pyserini
    _warmup(retriever)
    return make_app(retriever, ServerLimits(**json.loads(os.environ[_ENV_LIMITS])), info=info,
                    allowed_hosts=json.loads(os.environ.get(_ENV_HOSTS) or "null"))


def serve_workers(index: str, workers: int, host: str = "127.0.0.1", port: int = 8000,
                  limits: ServerLimits | None = None, device: str | None = None, log_level: str = "warning") -> None:
    """Serve with several worker processes (one search at a time each), for machines with cores to spare."""
    import uvicorn

    limits = dataclasses.asdict(limits or ServerLimits())
    os.environ.update({_ENV_INDEX: str(index), _ENV_LIMITS: json.dumps(limits), _ENV_DEVICE: device or "",
                       _ENV_HOSTS: json.dumps(allowed_hosts_for(host))})
    uvicorn.run("searche1.retrieval.server:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level=log_level)


def _warmup(retriever) -> None:
    warmup = getattr(retriever, "warmup", None)
    if warmup is not None:  # JIT-compile before the first request, not during it
        warmup()


def serve(retriever: Retriever, host: str = "127.0.0.1", port: int = 8000, limits: ServerLimits | None = None,
          info: dict | None = None, log_level: str = "warning", ready: str | None = None) -> None:
    """`ready`: a line printed once the search is compiled, just before the server listens."""
    import uvicorn

    _warmup(retriever)
    if ready:
        print(ready, flush=True)
    uvicorn.run(make_app(retriever, limits, info, allowed_hosts_for(host)), host=host, port=port,
                log_level=log_level)


@dataclasses.dataclass
class ServeSource:
    """What `searche1 serve` serves, as its flags name it: exactly one of `index` (a `searche1 index` directory),
    `faiss_index` + `corpus` (Search-R1's faiss file and corpus jsonl) or `pyserini_index`."""

    index: Optional[str] = None
    faiss_index: Optional[str] = None
    pyserini_index: Optional[str] = None
    corpus: Optional[str] = None
    model: Optional[str] = None
    query_prefix: Optional[str] = None
    device: Optional[str] = None

    def check(self, workers: int) -> None:
        """The flag combinations that cannot work, refused before anything is opened."""
        dense_flags = self.model is not None or self.query_prefix is not None
        if self.index is not None and (self.corpus is not None or dense_flags):
            raise ValueError("--corpus, --model and --query-prefix go with --faiss-index or --pyserini-index; an "
                             "index directory holds its documents and model")
        if self.pyserini_index is not None and dense_flags:
            raise ValueError("--model and --query-prefix are for dense retrieval (--faiss-index), not "
                             "--pyserini-index")
        if self.faiss_index is not None and self.corpus is None:
            raise ValueError("--faiss-index needs --corpus CORPUS.jsonl, the corpus whose line i is row i of the "
                             "index")
        if workers > 1 and self.index is None:  # each worker would scan the corpus again
            raise ValueError("--workers > 1 needs --index DIR; serve this with one worker, or import it once with "
                             "`searche1 index --method dense --faiss-index FILE --corpus CORPUS --model M --out DIR`")

    def describe_index(self) -> tuple[dict, str]:
        """(health info, a line naming it) of an index directory, read from its meta.json only."""
        from searche1.retrieval.base import read_meta

        meta = read_meta(self.index)
        return {"method": meta["method"], "n_docs": meta["n_docs"]}, f"{meta['method']} index {self.index}"

    def encoder(self, default_model: str) -> str:
        """The dense query encoder: --model, else the config's retrieval.model."""
        return default_model if self.model is None else self.model

    def opening(self, default_model: str) -> str:
        """What opening takes seconds for, said before it starts."""
        if self.index is not None:
            return f"opening index {self.index} and compiling its search before listening (a few seconds)"
        if self.faiss_index is not None:
            model = self.encoder(default_model)
            return f"opening {self.faiss_index}, loading the encoder {model} and finding the lines of {self.corpus}"
        return f"opening pyserini index {self.pyserini_index} (starts a Java VM)"

    def open(self, default_model: str, threads: int) -> tuple[Retriever, dict, str]:
        """(retriever, health info, a line naming what it serves)."""
        if self.index is not None:
            from searche1.retrieval.index import open_index

            info, name = self.describe_index()
            return open_index(self.index, device=self.device), info, name
        if self.faiss_index is not None:
            from searche1.retrieval.dense import open_faiss_and_corpus

            model = self.encoder(default_model)
            retriever = open_faiss_and_corpus(self.faiss_index, self.corpus, model, self.device, self.query_prefix)
            return retriever, {"method": "dense", "n_docs": len(retriever.docs), "model": model}, (
                f"faiss index {self.faiss_index} + {self.corpus} (model {model}, query prefix "
                f"{retriever.query_prefix!r})")
        from searche1.retrieval.pyserini_bm25 import open_pyserini

        retriever = open_pyserini(self.pyserini_index, self.corpus, threads)  # Lucene's batch search threads
        return (retriever, {"method": "bm25-pyserini", "n_docs": int(retriever.searcher.num_docs)},
                f"pyserini index {self.pyserini_index}")
