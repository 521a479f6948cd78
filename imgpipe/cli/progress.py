"""A rich progress bar for interactive runs (a terminal on stderr, not CI)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from imgpipe.core import events


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress_display(n_jobs: int):
    if not _interactive():
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from imgpipe.core.results import OK

    progress = Progress(
        TextColumn("[bold]imaging"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        transient=False,
    )
    bar = progress.add_task("jobs", total=n_jobs, failed=0)

    def listener(event: str, payload) -> None:
        if event == "finished":
            failed = progress.tasks[0].fields["failed"] + (payload.status != OK)
            progress.update(bar, advance=1, failed=failed)

    events.subscribe(listener)
    try:
        with progress:
            yield
    finally:
        events.unsubscribe(listener)
