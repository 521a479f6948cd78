"""What the terminal shows while a run goes on: a line per finished job, and on an
interactive terminal (not CI) a progress bar below them."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable

from imgpipe.core import events
from imgpipe.core.results import job_line


def counts_as_failed(result) -> bool:
    """A job the bar counts as failed: not ok and not skipped (done by an earlier run)."""
    return not result.ok


def interactive() -> bool:
    """A person watching: standard output and error are a terminal, and this is not CI."""
    return sys.stdout.isatty() and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def _on_finished(callback: Callable[[object], None]):
    """``callback(result)`` for every job that finishes while the block runs."""
    def listener(event: str, payload) -> None:
        if event == "finished":
            callback(payload)

    events.subscribe(listener)
    try:
        yield
    finally:
        events.unsubscribe(listener)


@contextmanager
def progress_display(n_jobs: int, echo: Callable[[str], None], console=None, bar: bool | None = None):
    """Each job's line (:func:`imgpipe.core.results.job_line`) as it finishes, through
    ``echo``; with ``bar`` (default: :func:`interactive`) the lines go above a bar of
    finished and failed jobs (``console``: rich's, for tests)."""
    if not (interactive() if bar is None else bar):
        with _on_finished(lambda result: echo(job_line(result))):
            yield
        return
    # rich: only for an interactive terminal
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]imaging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        transient=False,
        console=console,
    )
    task = progress.add_task("jobs", total=n_jobs, failed=0)

    def show(result) -> None:
        progress.console.print(job_line(result), markup=False, highlight=False, soft_wrap=True)
        progress.update(task, advance=1, failed=progress.tasks[0].fields["failed"] + counts_as_failed(result))

    with _on_finished(show), progress:
        yield
