"""The ``imgpipe`` console command: the click command, then a quick exit once a flow ran.

Python's own teardown of a process that loaded Prefect, astropy and matplotlib takes
~0.5 s (module and thread finalisation) after the run's last line; a night's report or a
user's prompt should not wait on it. Once the run's outcome is printed, Prefect's queued
logs and events have been sent (before imgpipe's own server stopped, or here to the
server the user runs), the logging handlers are flushed and the process leaves with its
exit code: every file the run writes is closed by then, every node connection released.
Without Prefect loaded (``--help``, ``--version``, a dry run, a config error) the ordinary
exit is already quick and is kept.
"""

from __future__ import annotations

import logging
import os
import sys

from imgpipe.cli.command import drain_prefect_workers
from imgpipe.cli.command import main as command


def main(args: list[str] | None = None, prog_name: str = "imgpipe") -> None:
    """Run the command line (``args``, else ``sys.argv``) and exit with its code."""
    try:
        command.main(args, prog_name=prog_name)
    except SystemExit as end:
        leave(end.code)
        raise


def leave(code: int | str | None) -> None:
    """Exit now with ``code`` when Prefect ran in this process; return otherwise."""
    if "prefect" not in sys.modules:
        return
    if isinstance(code, str):  # sys.exit("text"): the text on stderr, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    if os.environ.get("PREFECT_API_URL"):  # a server the user runs (imgpipe's own was drained before it stopped)
        drain_prefect_workers()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code or 0)
