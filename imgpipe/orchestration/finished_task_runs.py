"""Forget what a flow run keeps of each finished task run, once the job loop has its result.

Why: for every task run's return value, and each value one level inside it, Prefect keeps
a copy of the task run's final state in the flow run's context until the flow run ends:
that is how it links a later task's inputs to the task runs that made them
(PrefectHQ/prefect#12668: by design, so memory grows with the task count). A night's
thousands of jobs kept thousands of those entries (about seven per job). No task of
imgpipe takes a job's result as an input (the report gets the summary quoted), so the
links are never asked for, and a finished job's entries can go; so can the asset set and
the cancel event (~1 KiB with its lock and condition) Prefect keeps per task run, which a
finished task run no longer needs. Which of Prefect's fields those are, some of them
private, is ``prefect_internals.forget_task_runs``'s to know.
"""

from __future__ import annotations

from imgpipe.orchestration.prefect_internals import forget_task_runs

SWEEP_EVERY = 200
"""Finished task runs forgotten in one sweep of the context (a sweep reads every entry)."""


class FinishedTaskRuns:
    """Task runs whose results the loop has taken; their entries in the flow run's context
    are dropped every ``SWEEP_EVERY`` of them (what is left at most: the jobs in flight and
    the last few hundred)."""

    def __init__(self, every: int = SWEEP_EVERY):
        self.every = every
        self._ids: set = set()

    def forget(self, task_run_id) -> None:
        if task_run_id is None:
            return
        self._ids.add(task_run_id)
        if len(self._ids) >= self.every:
            self.sweep()

    def sweep(self) -> int:
        """Drop the entries (and cancel events, asset sets) of the task runs told so far; returns how many
        context entries went."""
        ids, self._ids = self._ids, set()
        return forget_task_runs(ids)
