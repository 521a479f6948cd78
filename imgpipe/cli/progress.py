"""What the terminal shows while a run goes on: a line per finished job, and on an
interactive terminal (not CI) a progress bar below them."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable

from imgpipe.core import events
from imgpipe.core.results import SKIPPED, job_line


def counts_as_failed(result) -> bool:
    """A job the bar counts as failed: not ok and not skipped (done by an earlier run)."""
    return not result.ok


def interactive() -> bool:
    """A person watching: standard output and error are a terminal, and this is not CI."""
    return sys.stdout.isatty() and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def _on_finished(callback: Callable[[Any], None], on_step: Callable[[str], None] = lambda what: None):
    """``callback(result)`` for every job that finishes while the block runs; ``on_step``
    with what the run is doing (``reaching nodes``, ``imaging``)."""
    def listener(event: str, payload) -> None:
        if event == "finished":
            callback(payload)
        elif event in STEPS:
            on_step(STEPS[event])

    events.subscribe(listener)
    try:
        yield
    finally:
        events.unsubscribe(listener)


STEPS = {"planned": "reaching nodes", "started": "imaging"}
"""What the bar says once the run has emitted each event (before the first: ``starting Prefect``)."""


def done_before(result) -> bool:
    """A job skipped because an earlier run did it: one count line on a terminal, not a line each."""
    return result.status == SKIPPED and not result.no_data


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
        TextColumn("[bold]{task.fields[what]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        transient=False,
        console=console,
    )
    task = progress.add_task("jobs", total=n_jobs, failed=0, what="starting Prefect")
    skipped = [0]

    def say_skipped() -> None:
        if skipped[0]:
            progress.console.print(f"  SKIPPED   {skipped[0]} job(s) done by an earlier run (--force redoes them)",
                                   markup=False, highlight=False)
            skipped[0] = 0

    def show(result) -> None:
        if done_before(result):
            skipped[0] += 1
        else:
            say_skipped()
            progress.console.print(job_line(result, progress.console.width), markup=False, highlight=False,
                                   soft_wrap=True)
        progress.update(task, advance=1, failed=progress.tasks[0].fields["failed"] + counts_as_failed(result),
                        what="imaging")

    with _on_finished(show, lambda what: progress.update(task, what=what)), progress:
        try:
            yield
        finally:
            say_skipped()
