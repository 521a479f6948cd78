"""Forget what a flow run keeps of each finished task run, once the job loop has its result.

Why: for every task run's return value, and each value one level inside it, Prefect keeps
a copy of the task run's final state in the flow run's context (``FlowRunContext.
run_results``) until the flow run ends: that is how it links a later task's inputs to the
task runs that made them (PrefectHQ/prefect#12668: by design, so memory grows with the
task count). A night's thousands of jobs kept thousands of those entries (about seven per
job). No task of imgpipe takes a job's result as an input (the report gets the summary
quoted), so the links are never asked for, and a finished job's entries can go; so can
its entry in ``FlowRunContext.task_run_assets`` (the assets a task run hands downstream,
an empty set for each of imgpipe's, read only for a task run's inputs).

The thread-pool task runner also keeps, per task run, the event it would set to cancel it
(``ThreadPoolTaskRunner._cancel_events``, ~1 KiB each with its lock and condition) to the
end of the flow run; a finished task run has nothing left to cancel, so its event goes at
the same sweep. (Prefect's own fields, some private: ``prefect_internals.forget_task_runs``.)
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
