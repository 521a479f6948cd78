"""What became of each job, and the end-of-run summary."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from imgpipe.plan import Job

OK, FAILED, CANCELLED = "ok", "failed", "cancelled"


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by signal SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


@dataclass(frozen=True)
class JobResult:
    """Outcome and cost of one job."""

    job: Job
    status: str
    reason: str = ""
    """Why it failed ("exit code 1", "killed by SIGKILL", "cannot start: ...")."""
    exit_code: int | None = None
    started_at: float | None = None
    """Unix time the WSClean process started (None: it never started)."""
    ended_at: float | None = None
    cpu_s: float | None = None
    """User + system CPU seconds of the job's process."""
    max_rss_mb: float | None = None
    """Peak resident memory of the job's largest process (MiB); None where not measured (SSH)."""
    pid: int | None = None
    """PID (and process group) of WSClean on its node; None: it never started."""
    connection_error: bool = False
    """The node could not be reached or the connection was lost (see ``reason``)."""
    attempt: int = 1
    """1 for the first try, 2 for the first retry, ..."""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def wall_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass
class RunSummary:
    results: list[JobResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def n_ok(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def n_failed(self) -> int:
        return len(self.results) - self.n_ok

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def lines(self) -> list[str]:
        out = []
        for r in self.results:
            cost = ""
            if r.wall_s is not None:
                cost = f" {r.wall_s:.1f}s"
                if r.cpu_s is not None:
                    cost += f" cpu {r.cpu_s:.1f}s"
                if r.max_rss_mb is not None:
                    cost += f" peak {r.max_rss_mb:.0f} MiB"
            why = f" ({r.reason})" if r.reason else ""
            out.append(f"  {r.status.upper():9s} {r.job.label}{cost}{why}  log: {r.job.log_path}")
        out.append(
            f"{len(self.results)} job(s): {self.n_ok} ok, {self.n_failed} failed, in {self.wall_s:.1f} s"
        )
        return out
