"""What of Prefect's logging reaches the terminal of a command-line run.

Quiet (a terminal's default): warnings and errors only, without the lines the command
line prints itself (each job's end, the summary: marked with ``events.SHOWN``) and
without the engine's line at each run's end (``prefect_internals.FINISHED_IN_STATE``: the job's own line says it). Verbose
(``-v``, and the default when the output is a file or a pipe, as under cron or CI):
every line, timestamped and greppable, still without those marked lines, so that the
summary shows once. The Prefect UI and the task logs get everything in both cases:
only the console handler is filtered.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from imgpipe.orchestration.prefect_internals import FINISHED_IN_STATE, STILL_PROCESSING, TASK_FAILED_WITH_STATE

NEVER_SHOWN = (
    # Prefect's task engine when a task returns a Failed state: the state's repr with the
    # whole JobResult (~2 kB) and "NoneType: None" (exc_info with no exception); the job's
    # own line says why it failed
    TASK_FAILED_WITH_STATE,
    # Prefect's log and event workers while the run's last lines are sent
    STILL_PROCESSING,
)
"""How the lines of Prefect's that a terminal or a log file never gets begin."""


class ConsoleLines(logging.Filter):
    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "imgpipe_shown", False) or str(record.msg).startswith(NEVER_SHOWN):
            return False
        if self.verbose:
            return True
        return record.levelno >= logging.WARNING and not str(record.msg).startswith(FINISHED_IN_STATE)


def _console_handlers() -> list[logging.Handler]:
    """Prefect's console handler(s): on the root logger and on uvicorn's and fastapi's."""
    # (Prefect is imported by now: this runs once the flow module is loaded)
    from prefect.logging.handlers import PrefectConsoleHandler

    found: list[logging.Handler] = []
    for name in ("", "uvicorn", "fastapi"):
        found += [h for h in logging.getLogger(name).handlers if isinstance(h, PrefectConsoleHandler) and h not in found]
    return found


@contextmanager
def console_lines(verbose: bool):
    """Filter Prefect's console handlers while the run lasts (see the module's docstring)."""
    lines = ConsoleLines(verbose)
    handlers = _console_handlers()
    for handler in handlers:
        handler.addFilter(lines)
    try:
        yield lines
    finally:
        for handler in handlers:
            handler.removeFilter(lines)
