"""`searche1 demo`, `view` and `report`: the main job and looking at runs (parsers and handlers)."""

from __future__ import annotations

import sys

from searche1.cli.common import COMMANDS, add_config_args


def add_parsers(sub) -> None:
    h = COMMANDS

    p = sub.add_parser("demo", help=h["demo"], description=h["demo"])
    p.add_argument("--out", default="runs/demo", help="run directory")
    add_config_args(p)
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("view", help=h["view"], description=h["view"] + " (docs/viewer.md). Read-only.")
    p.add_argument("run", help="a run directory (searche1 train / demo output, or one phase's directory), or an "
                               "eval report (searche1 eval --out FILE.json) or the directory holding it")
    p.add_argument("--port", type=int, default=8765, help="port of the page (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback: the page shows the run's "
                                                       "data to whoever can reach it)")
    p.set_defaults(handler=cmd_view)

    p = sub.add_parser("report", help=h["report"], description=h["report"] + " (docs/viewer.md)")
    p.add_argument("run", help="a run directory")
    p.add_argument("--out", default=None, help="output directory (default RUN/report)")
    p.set_defaults(handler=cmd_report)


def cmd_demo(args) -> int:
    from searche1.demo import run_demo

    return run_demo(args.out, args.preset, args.overrides)


def cmd_view(args) -> int:
    from searche1.runtime import check_port_free, is_loopback
    from searche1.view.app import serve_viewer
    from searche1.view.rundir import RunDir

    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    run = RunDir(args.run)  # a clear error now, not in the browser
    check_port_free(args.host, args.port)
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
