"""The one small interface every execution backend has: run a job, cancel, close."""

from __future__ import annotations

import threading
from typing import Callable, Protocol

from imgpipe.core.plan import Job
from imgpipe.core.results import JobResult


class Backend(Protocol):
    """Where jobs of one kind run (this machine, SSH nodes, SLURM), for one run.

    A backend is made by the run that uses it and closed when that run ends: it holds
    what the run needs between jobs (SSH connections and node agents, a SLURM
    allocation) and the registry of the jobs it runs, so a cancel reaches them all.
    """

    def run(self, job: Job, on_line: Callable[[str], None] = ..., stop: threading.Event | None = None) -> JobResult:
        """Run ``job`` on ``job.host`` until it ends; its output goes to ``on_line`` line by
        line. ``stop``, when set, stops this job alone. Never raises for a job that failed:
        the result says how."""

    def cancel(self, grace_s: float) -> object:
        """Stop every job it runs (SIGTERM, SIGKILL after ``grace_s``); jobs not started yet will not start."""

    def close(self) -> None:
        """Release what it holds (connections, node agents, allocations); its jobs have ended."""
