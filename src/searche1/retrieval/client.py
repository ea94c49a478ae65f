"""Retriever clients for the rollout engine: in-process (no HTTP; fastest on one machine) or HTTP.

Both return, per query, the top-k documents as dicts `{"id", "contents"}`, the shape `protocol.render_docs` takes.
"""

from __future__ import annotations

import time
from typing import Protocol, Sequence

from searche1.retrieval.base import Retriever


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
        hits = self.retriever.search(list(queries), topk or self.topk)
        return [[h.doc.to_json() for h in row] for row in hits]


class HttpClient:
    """POST /retrieve with a timeout, bounded retries and exponential backoff on connection errors, timeouts
    and 5xx answers."""

    def __init__(self, url: str, topk: int = 3, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5):
        import httpx

        self.url = url.rstrip("/")
        if not self.url.endswith("/retrieve"):
            self.url += "/retrieve"
        self.topk, self.retries, self.backoff = topk, retries, backoff
        self._http = httpx.Client(timeout=timeout)

    def retrieve(self, queries: Sequence[str], topk: int | None = None) -> list[list[dict]]:
        import httpx

        payload = {"queries": list(queries), "topk": topk or self.topk, "return_scores": False}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                r = self._http.post(self.url, json=payload)
            except httpx.TransportError as e:  # connect errors, timeouts, dropped connections
                last = f"{type(e).__name__}: {e}"
                continue
            if r.status_code >= 500:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise RetrieverRequestError(f"retriever at {self.url} rejected the request: HTTP {r.status_code} "
                                            f"{r.text[:500]}")
            result = r.json()["result"]
            if len(result) != len(payload["queries"]):
                raise RetrieverRequestError(f"retriever at {self.url} answered {len(result)} results for "
                                            f"{len(payload['queries'])} queries")
            return result
        raise RetrieverUnavailable(
            f"retriever at {self.url} unreachable after {self.retries + 1} attempts ({last}); "
            "is `searche1 serve` running there?")

    def close(self):
        self._http.close()


def make_client(target: str, topk: int = 3, timeout: float = 30.0, retries: int = 3) -> RetrievalClient:
    """An http(s):// URL -> HttpClient; an index directory -> InProcessClient over the opened index."""
    if target.startswith(("http://", "https://")):
        return HttpClient(target, topk=topk, timeout=timeout, retries=retries)
    from searche1.retrieval.index import open_index

    return InProcessClient(open_index(target), topk=topk)
