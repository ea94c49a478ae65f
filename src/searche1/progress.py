"""The progress bar every long phase shows: a bar, done/total, elapsed and ETA, on stderr (stdout stays for
results)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress(console: Console | None = None, disable: bool = False) -> Progress:
    """`disable`: draw nothing at all (an invisible task alone still leaves a blank line on a non-terminal)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console or Console(stderr=True),
                    transient=False, disable=disable)
