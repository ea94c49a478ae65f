"""Retriever clients for the rollout engine: in-process (no HTTP; fastest on one machine) or HTTP.

Both return, per query, the top-k documents as dicts `{"id", "contents"}`, the shape `protocol.render_docs` takes.
"""

from __future__ import annotations

import random
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Protocol, Sequence

from searche1.retrieval.base import Retriever, check_queries


class RetrieverUnavailable(RuntimeError):
    """The HTTP retriever could not be reached after every retry."""


class RetrieverRequestError(RuntimeError):
    """The retriever rejected the request (HTTP 4xx); retrying would not help."""


class RetrievalClient(Protocol):
    def retrieve(self, queries: Sequence[str], topk: int | None = None) -> list[list[dict]]: ...


class InProcessClient:
    def __init__(self, retriever: Retriever, topk: int = 3):
        self.retriever, self.topk = retriever, topk

    def retrieve(self, queries: Sequence[str], topk: int | None = None) -> list[list[dict]]:
        return [[doc for doc, _ in row] for row in self.retrieve_scored(queries, topk)]

    def retrieve_scored(self, queries: Sequence[str], topk: int | None = None) -> list[list[tuple[dict, float]]]:
        """As `retrieve`, each document with its score."""
        hits = self.retriever.search(check_queries(queries), self.topk if topk is None else topk)
        return [[(h.doc.to_json(), float(h.score)) for h in row] for row in hits]


def retrieve_url(url: str) -> str:
    """`http://host:8000` or `.../retrieve` (query string kept) -> the /retrieve endpoint."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/retrieve"):
        path += "/retrieve"
    return urllib.parse.urlunsplit(parts._replace(path=path))


class HttpClient:
    """POST /retrieve with a per-request timeout, and bounded retries with exponential backoff and jitter on
    connection errors, timeouts, 5xx answers and answers that are not a /retrieve response. A 4xx answer is not
    retried (RetrieverRequestError). Queries go `max_queries` per request (the server's default limit): one GRPO
    turn of 512 prompts x 5 samples searches 2560 at once.

    It asks for `return_scores: true`, because Search-R1's own server fails on `false`; so it works against both
    servers, and unwraps each `{"document": ..., "score": ...}`."""

    def __init__(self, url: str, topk: int = 3, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 max_queries: int = 512, seed: int | None = None, warn: Callable[[str], None] | None = None):
        """`warn` gets one line per retry (default: printed to stderr), so a long wait is never silent."""
        import httpx

        self.url = retrieve_url(url)
        self.topk, self.retries, self.backoff, self.max_queries = topk, retries, backoff, max_queries
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout)
        self._jitter = random.Random(seed)  # processes that failed together do not retry in lockstep
        self._warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))

    def retrieve(self, queries: Sequence[str], topk: int | None = None) -> list[list[dict]]:
        return [[doc for doc, _ in row] for row in self.retrieve_scored(queries, topk)]

    def retrieve_scored(self, queries: Sequence[str], topk: int | None = None) -> list[list[tuple[dict, float]]]:
        """As `retrieve`, each document with its score (None from a server that sends none)."""
        queries = check_queries(queries)
        out: list[list[tuple[dict, float]]] = []
        for start in range(0, len(queries), self.max_queries):
            out += self._retrieve(queries[start:start + self.max_queries], self.topk if topk is None else topk)
        return out

    def _retrieve(self, queries: list[str], topk: int) -> list[list[tuple[dict, float]]]:
        import httpx

        payload = {"queries": queries, "topk": topk, "return_scores": True}
        last, reachable, timed_out = "", False, False
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1) * self._jitter.uniform(0.5, 1.5)
                self._warn(f"retrieval: {last.split(': ', 1)[0] if timed_out else last[:120]}, "
                           f"retry {attempt}/{self.retries} in {delay:.1f} s")
                time.sleep(delay)
            try:
                r = self._http.post(self.url, json=payload)
            except httpx.TransportError as e:  # connect errors, timeouts, dropped connections
                # a read timeout: the server took the request and never answered (busy or stuck), not "down"
                timed_out = isinstance(e, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout))
                last = (f"timeout after {self.timeout:g} s: {type(e).__name__}" if timed_out
                        else f"{type(e).__name__}: {e}")
                continue
            reachable, timed_out = True, False
            if r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise RetrieverRequestError(f"retriever at {self.url} rejected the request: HTTP {r.status_code} "
                                            f"{r.text[:500]}")
            try:
                return self._parse(r, len(queries))
            except ValueError as e:  # a server half-broken: as a 5xx, it may answer well next time
                last = str(e)
        attempts = f"after {self.retries + 1} attempts ({last})"
        if timed_out:
            raise RetrieverUnavailable(f"retriever at {self.url} timed out {attempts}: it accepted the connection "
                                       f"but sent no answer within retrieval.timeout={self.timeout:g} s; is it "
                                       "overloaded, or stuck?")
        if reachable:
            raise RetrieverUnavailable(f"retriever at {self.url} kept failing {attempts}")
        raise RetrieverUnavailable(f"retriever at {self.url} unreachable {attempts}; is `searche1 serve` running "
                                   "there?")

    def _parse(self, response, n_queries: int) -> list[list[tuple[dict, float]]]:
        """(document, score) pairs of a /retrieve answer; ValueError saying what is wrong with it otherwise."""
        def bad(why: str) -> ValueError:
            return ValueError(f"an answer that is not a /retrieve response ({why}): {response.text[:200]}")

        try:
            result = response.json()["result"]
        except (ValueError, KeyError, TypeError):
            raise bad("no JSON object with a 'result' field") from None
        if not isinstance(result, list) or len(result) != n_queries or not all(isinstance(x, list) for x in result):
            raise bad(f"expected one list of documents for each of {n_queries} queries")
        try:
            return [[(d["document"], d.get("score")) if "document" in d else (d, None) for d in docs]
                    for docs in result]
        except (TypeError, AttributeError):
            raise bad("documents must be objects") from None

    def close(self):
        self._http.close()


def make_client(target: str, topk: int = 3, timeout: float = 30.0, retries: int = 3) -> RetrievalClient:
    """An http(s):// URL -> HttpClient; an index directory -> InProcessClient over the opened index."""
    if target.lower().startswith(("http://", "https://")):
        return HttpClient(target, topk=topk, timeout=timeout, retries=retries)
    if not Path(target).exists() and re.fullmatch(r"[\w.-]+:\d+(/.*)?|\[[0-9a-fA-F:]+\]:\d+(/.*)?", target):
        raise ValueError(f"{target} is not an index directory; for a server there, pass http://{target}")
    from searche1.retrieval.index import open_index

    return InProcessClient(open_index(target), topk=topk)


def client_from_config(retrieval, target: str | None = None, topk: int | None = None) -> RetrievalClient:
    """make_client with the settings of a `retrieval:` config section; `target` and `topk` (command-line
    flags) win over its index and topk when given."""
    r = retrieval
    return make_client(r.index if target is None else target, topk=r.topk if topk is None else topk,
                       timeout=r.timeout, retries=r.retries)


def check_failures(failed: int, total: int, on_failure: str, max_share: float, what: str) -> None:
    """Raise RetrieverUnavailable when more than `max_share` of `total` samples lost their search
    (retrieval.on_failure=skip): scored 0, they would pass for the model's failures in normal-looking figures."""
    if total and failed / total > max_share:
        every = "every sample" if failed == total else f"{failed} of {total} samples ({failed / total:.0%})"
        raise RetrieverUnavailable(
            f"retrieval failed for {every} of {what} (retrieval.on_failure={on_failure}; the limit is "
            f"retrieval.max_failed_share={max_share:g}): the figures would measure the retriever, not the model. "
            "Is the retriever running?")
