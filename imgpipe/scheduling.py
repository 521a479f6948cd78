"""Which job to start next: plan order, but never more than ``max_concurrent`` per node.

A job waits only for its own node: a busy node does not hold back jobs of a free one.
Starting a job only when its node has a free slot keeps queued jobs honest in the
Prefect UI (Pending, not Running while they wait).
"""

from __future__ import annotations

from collections import Counter

from imgpipe.plan import Job


class SlotScheduler:
    def __init__(self, jobs: list[Job] | tuple[Job, ...], max_concurrent: int):
        self._pending = list(jobs)
        self._max = max_concurrent
        self.running: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take_ready(self) -> list[Job]:
        """Jobs that may start now (their slots are counted as taken), in plan order."""
        ready, left = [], []
        for job in self._pending:
            if self.running[job.host] < self._max:
                self.running[job.host] += 1
                ready.append(job)
            else:
                left.append(job)
        self._pending = left
        return ready

    def release(self, job: Job) -> None:
        """The job ended (any way): free its slot."""
        self.running[job.host] -= 1

    def drop_pending(self) -> list[Job]:
        """Forget the jobs not started yet (cancellation) and return them."""
        dropped, self._pending = self._pending, []
        return dropped
