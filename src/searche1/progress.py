"""The progress bar every long phase shows: a bar, done/total, elapsed and ETA, on stderr (stdout stays for
results)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY_SECONDS = 30.0
SPEED_WINDOW_SECONDS = 600.0
"""How far back the ETA's speed looks: rich's 30 s gives no ETA at all when one step takes longer (a SmolLM2 step)."""


class _Progress(Progress):
    """On a console that is not a terminal (a redirected log) rich draws a bar only when it ends: there, print each
    running task's line every `log_every` seconds instead, so a log of a long phase shows how far it is."""

    def __init__(self, *columns, log_every: float = LOG_EVERY_SECONDS, **kwargs):
        super().__init__(*columns, **kwargs)
        self.log_every, self._logged_at = log_every, time.monotonic()

    def _log_if_due(self) -> None:
        if self.disable or self.console.is_terminal or time.monotonic() - self._logged_at < self.log_every:
            return
        self._logged_at = time.monotonic()
        running = [t for t in self.tasks if t.visible and not t.finished]
        if running:
            self.console.print(self.make_tasks_table(running))

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log_if_due()

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._log_if_due()


def progress(console: Console | None = None, disable: bool = False, counts: bool = True,
             info: bool = False, log_every: float = LOG_EVERY_SECONDS) -> Progress:
    """`disable`: draw nothing at all (an invisible task alone still leaves a blank line on a non-terminal).
    `counts`: show done/total (off when the total is a time budget). `info`: show each task's `info` field
    (its tasks must then be added with info=...). `log_every`: seconds between plain lines on a non-terminal."""
    columns = [TextColumn("{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn()] if counts else []
    columns += [TextColumn("{task.fields[info]}")] if info else []
    return _Progress(*columns, TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                     console=console or Console(stderr=True), transient=False, disable=disable, log_every=log_every,
                     speed_estimate_period=SPEED_WINDOW_SECONDS)
