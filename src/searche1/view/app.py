"""`searche1 view RUN`: a local web page over a run directory (FastAPI + uvicorn, loopback by default).

Read-only: the page (static/) asks the JSON API below, which reads the run through RunDir. Nothing the page sends
names a file: phases are looked up by their key in the run, so a request cannot reach outside RUN.

  GET /                          the page
  GET /api/run                   name, path, phases, the tables (the report's cells), trajectory sources
  GET /api/figure/NAME.svg       a figure of view/figures.py (404 when the run has nothing to draw in it)
  GET /api/trajectories          a page of one phase's (or every phase's) trajectories, filtered
  GET /api/trajectory            one trajectory, turn by turn
  GET /api/pairs, /api/pair      an OFSD phase's pairs; one pair side by side with the student's token KL
"""

from __future__ import annotations

import threading
from pathlib import Path

from searche1.fileio import InputError
from searche1.runtime import LOOPBACK_HOSTS, is_loopback
from searche1.view import figures, tables
from searche1.view.render import list_row, render_trajectory
from searche1.view.rundir import SOURCES, RunDir

STATIC = Path(__file__).with_name("static")
MAX_PER_PAGE = 200


def _page(indices: list, page: int, per_page: int) -> tuple[list, dict]:
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    pages = max(1, -(-len(indices) // per_page))
    page = min(max(1, page), pages)
    return indices[(page - 1) * per_page:page * per_page], {"total": len(indices), "page": page, "pages": pages,
                                                            "per_page": per_page}


def make_app(run_path: str | Path, allowed_hosts: list[str] | None = None):
    """The viewer's app. `allowed_hosts` (the Host headers answered; None = any) keeps a page on another site
    from reading a loopback viewer through DNS rebinding: serve_viewer sets it to the loopback names."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse, Response

    run = RunDir(run_path)
    lock = threading.Lock()
    svg_cache: dict[str, tuple[tuple, bytes | None]] = {}
    app = FastAPI(title=f"searche1 view: {run.name}", docs_url=None, redoc_url=None)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.exception_handler(KeyError)
    @app.exception_handler(IndexError)
    async def not_found(_request, exc: LookupError):
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    @app.exception_handler(InputError)
    async def bad_file(_request, exc: InputError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def current() -> RunDir:
        with lock:
            run.refresh()  # a run still training grows phases and records
        return run

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}")
    def static(name: str):
        path = STATIC / name
        if path.parent != STATIC or not path.is_file():
            raise HTTPException(404, f"no static file {name}")
        return FileResponse(path)

    @app.get("/api/run")
    def run_info():
        r = current()
        return {"name": r.name, "path": str(r.path), "tables": tables.run_tables(r),
                "phases": [{"key": p.key, "name": p.name, "kind": p.kind, "finished": p.finished,
                            "sources": [s for s in SOURCES if p.source_path(s)],
                            "pairs": (p.path / "pairs.jsonl").is_file()} for p in r.phases]}

    @app.get("/api/figure/{name}.svg")
    def figure(name: str):
        r = current()
        stamp = r.stamp()
        cached = svg_cache.get(name)
        if cached is None or cached[0] != stamp:
            from searche1.plots import figure_bytes

            with lock:  # matplotlib's pyplot is not thread-safe
                fig = figures.make_figure(r, name)
                svg_cache[name] = (stamp, figure_bytes(fig, "svg") if fig is not None else None)
        svg = svg_cache[name][1]
        if svg is None:
            raise HTTPException(404, f"nothing to draw in {name} for this run")
        return Response(svg, media_type="image/svg+xml")

    @app.get("/api/trajectories")
    def trajectories(phase: str = "all", source: str = "eval", benchmark: str | None = None,
                     correct: bool | None = None, searches: int | None = None, page: int = 1,
                     per_page: int = Query(50)):
        r = current()
        keys = [p.key for p in r.phases if p.source_path(source)] if phase == "all" else [phase]
        chosen, benchmarks, counts = [], set(), set()
        for key in keys:
            ix = r.index(key, source)
            benchmarks.update(ix.benchmarks)
            counts.update(int(c) for c in set(ix.searches.tolist()))
            chosen += [(key, int(i)) for i in ix.select(benchmark or None, correct, searches)]
        shown, paging = _page(chosen, page, per_page)
        rows = [{"phase": key, **list_row(i, r.index(key, source).row(i))} for key, i in shown]
        return {**paging, "rows": rows, "benchmarks": sorted(benchmarks), "search_counts": sorted(counts)}

    @app.get("/api/trajectory")
    def trajectory(phase: str, index: int, source: str = "eval"):
        r = current()
        t = r.index(phase, source).trajectory(index)
        return {"phase": phase, "source": source, "index": index, **render_trajectory(t, r.tokenizer())}

    @app.get("/api/pairs")
    def pairs(phase: str, page: int = 1, per_page: int = Query(50)):
        r = current()
        records = r.pairs(phase)
        pool = r.index(phase, "pool") if records else None
        shown, paging = _page(list(range(len(records))), page, per_page)
        rows = []
        for n in shown:
            p = records[n]
            ref, student = (pool.find(p["group_id"], p[k]) for k in ("reference", "student"))
            rows.append({"index": n, "group_id": p["group_id"], "question": p.get("question"),
                         "reference": p["reference"], "student": p["student"], "student_kl": p.get("student_kl"),
                         "reference_em": float(pool.em[ref]), "student_em": float(pool.em[student]),
                         "reference_searches": int(pool.searches[ref]),
                         "student_searches": int(pool.searches[student])})
        return {**paging, "rows": rows}

    @app.get("/api/pair")
    def pair(phase: str, index: int):
        r = current()
        records = r.pairs(phase)
        if not 0 <= index < len(records):
            raise HTTPException(404, f"phase {phase} has {len(records)} pairs; no pair {index}")
        p = records[index]
        pool = r.index(phase, "pool")
        reference = pool.trajectory(pool.find(p["group_id"], p["reference"]))
        student = pool.trajectory(pool.find(p["group_id"], p["student"]))
        token_kl = p.get("student_token_kl")
        tokenizer = r.tokenizer()
        return {"phase": phase, "index": index, "group_id": p["group_id"], "question": p.get("question"),
                "student_kl": p.get("student_kl"), "tau_clip": p.get("tau_clip"),
                "divergence": p.get("divergence", "forward"), "privileged_prompt": p.get("privileged_prompt"),
                "has_token_kl": token_kl is not None, "reference": render_trajectory(reference, tokenizer),
                "student": render_trajectory(student, tokenizer, token_kl)}

    return app


def serve_viewer(run_path: str | Path, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning"):
    import uvicorn

    allowed = list(LOOPBACK_HOSTS) if is_loopback(host) else None
    uvicorn.run(make_app(run_path, allowed), host=host, port=port, log_level=log_level)
