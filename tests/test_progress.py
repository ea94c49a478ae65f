"""The progress bar on a non-terminal (a redirected log): a plain line per running task every `log_every` seconds,
then the final bar."""

import io

from rich.console import Console

from searche1.progress import progress


def _log(log_every: float, steps: int = 4) -> list[str]:
    out = io.StringIO()
    with progress(console=Console(file=out, width=100), log_every=log_every) as bar:
        task = bar.add_task("phase", total=steps)
        for _ in range(steps):
            bar.advance(task)
    return out.getvalue().splitlines()


def test_a_redirected_log_shows_progress_as_it_goes():
    lines = _log(log_every=0.0)
    # one line after each of the first three steps (the fourth ends the task), then the final bar
    assert [line.split()[-4] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(line.startswith("phase ") and " eta " in line for line in lines)


def test_lines_wait_for_the_interval():
    assert len(_log(log_every=3600.0)) == 1  # the final bar only


def test_steps_slower_than_half_a_minute_still_get_an_eta():
    clock = [0.0]
    with progress(console=Console(file=io.StringIO()), log_every=3600.0) as bar:
        bar.get_time = lambda: clock[0]  # tasks read the time through it from add_task on
        task = bar.add_task("phase", total=10)
        for _ in range(3):
            clock[0] += 40.0
            bar.advance(task)
        assert bar.tasks[0].time_remaining == 7 * 40.0
