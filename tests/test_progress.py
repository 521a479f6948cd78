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


def test_on_a_terminal_done_jobs_are_one_line_and_each_line_fits():
    """Issue 45: 15. A re-run's 17 done jobs: one count line, not 17; a job's line fits the
    terminal's width (its log only when it did not end ok); the bar says what the run does."""
    out = io.StringIO()
    long = JobResult(make_job(ms=("/data/" + "x" * 150 + "/SW09.MS",), name="i9"), FAILED, "exit code 1: " + "y" * 200)
    with progress_display(19, print, console=Console(file=out, force_terminal=True, width=100), bar=True):
        events.emit("planned", None)
        for i in range(17):
            events.emit("finished", result(i, SKIPPED))
        events.emit("started", None)
        events.emit("finished", result(17, OK))
        events.emit("finished", long)
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())  # (rich's cursor moves and colours off)
    lines = [line for line in text.splitlines() if line.strip() and "━" not in line and "imaging" not in line]
    assert [line.split()[0] for line in lines if "SW0" in line or "SKIPPED" in line] == ["SKIPPED", "OK", "FAILED"]
    assert "  SKIPPED   17 job(s) done by an earlier run (--force redoes them)" in text
    ok_line = next(line for line in lines if line.lstrip().startswith("OK"))
    assert "log:" not in ok_line
    failed = next(line for line in lines if line.lstrip().startswith("FAILED"))
    assert len(failed) <= 100 and failed.endswith("…"), failed
    # (before the first event; 'reaching nodes' once the plan is out is drawn only at a refresh)
    assert text.startswith("starting Prefect") and text.splitlines()[-1].startswith("imaging")
