"""A rich progress bar for interactive runs (a terminal on stderr, not CI)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from imgpipe.core import events


def counts_as_failed(result) -> bool:
    """A job the bar counts as failed: not ok and not skipped (done by an earlier run)."""
    return not result.ok


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress_display(n_jobs: int, console=None):
    """A bar of finished jobs and how many failed, while the run goes on (``console``: rich's, for tests)."""
    if console is None and not _interactive():
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
    bar = progress.add_task("jobs", total=n_jobs, failed=0)

    def listener(event: str, payload) -> None:
        if event == "finished":
            failed = progress.tasks[0].fields["failed"] + counts_as_failed(payload)
            progress.update(bar, advance=1, failed=failed)

    events.subscribe(listener)
    try:
        with progress:
            yield
    finally:
        events.unsubscribe(listener)
