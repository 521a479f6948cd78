"""The progress bar of interactive runs: what it counts."""

from __future__ import annotations

import io

from rich.console import Console

from imgpipe.cli.progress import progress_display
from imgpipe.core import events
from imgpipe.core.results import FAILED, OK, SKIPPED, JobResult

from support.jobs import make_job


def result(i: int, status: str) -> JobResult:
    return JobResult(make_job(ms=(f"/d/SW0{i}.MS",), name=f"i{i}"), status)


def test_skipped_jobs_are_not_counted_as_failed():
    out = io.StringIO()
    with progress_display(3, print, console=Console(file=out, force_terminal=True, width=100), bar=True):
        for i, status in enumerate((OK, SKIPPED, FAILED)):
            events.emit("finished", result(i, status))
    rendered = [line for line in out.getvalue().splitlines() if "imaging" in line]
    final = rendered[-1]
    assert "3/3" in final and "1 failed" in final, final
