"""The progress bar every long phase shows: a bar, done/total, elapsed and ETA, on stderr (stdout stays for
results)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress(console: Console | None = None, disable: bool = False, counts: bool = True,
             info: bool = False) -> Progress:
    """`disable`: draw nothing at all (an invisible task alone still leaves a blank line on a non-terminal).
    `counts`: show done/total (off when the total is a time budget). `info`: show each task's `info` field
    (its tasks must then be added with info=...)."""
    columns = [TextColumn("{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if counts else []
    columns += [TextColumn("{task.fields[info]}")] if info else []
    return Progress(*columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console or Console(stderr=True), transient=False, disable=disable)
