"""Execution backends: how one job's command runs on its host.

Every backend takes a :class:`~imgpipe.plan.Job` and a line callback and returns a
:class:`~imgpipe.results.JobResult`; the orchestration layer does not care where.
"""
