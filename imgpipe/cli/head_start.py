"""The head start: a command-line run's first jobs start while its embedded Prefect server starts.

Why: a fresh embedded server answers seconds after the command starts (it imports
Prefect's web application: docs/prefect.md), and the first jobs waited for it, though
WSClean needs nothing of it. With a head start the jobs that would take the first slots
start as soon as the plan is made; the flow takes each over when it reaches it (its
task run, node slot, output, accounting and record, as for any job).

What stays true:
- The per-node cap across runs. Slots are held in this PREFECT_HOME's database, out of
  reach until the server answers; a head start is taken only when no other imgpipe run
  of this PREFECT_HOME is alive (``home_lock``, held exclusively until the early jobs
  hold their slots there; a run starting meanwhile waits for that), and only with this
  home's own SQLite database and no Prefect server running on it (which could serve
  runs of other machines).
- The jobs the flow would start first, the same way: those not done before and not
  another job's images (provenance), in the dispatcher's order and admission, with
  their MS locks and their "being written" record, before WSClean starts.
- The history: each job is a task run of the flow run, which logs when it really
  started, and WSClean's output is logged from its first line.

Only for runs on this machine (no SSH node, SLURM, Dask or MPI) with the run's own
embedded server; otherwise the jobs start once the server answers.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from imgpipe.core.nodes import is_local
from imgpipe.core.scheduling import SlotScheduler
from imgpipe.facts.prefect_profile import DATABASE_URL_SETTINGS, configured_setting
from imgpipe.orchestration import home_lock
from imgpipe.orchestration.dispatcher import Dispatcher
from imgpipe.orchestration.embedded_server import prefect_home
from imgpipe.orchestration.kept_server import PID_FILE, server_port
from imgpipe.orchestration.ms_locks import LocalMsLocks, hand_over
from imgpipe.products import provenance


def why_not(config, plan, environ=os.environ) -> str | None:
    """Why this run may not start jobs before its server answers (None: it may)."""
    if config.prefect.dask or config.nodes_mpi or config.worker.slurm_nodes:
        return "Dask, MPI or SLURM run"
    if not all(is_local(host) for host in plan.hosts()):
        return "a node other than this machine"
    if configured_setting(environ, *DATABASE_URL_SETTINGS):
        return "a Prefect database other than PREFECT_HOME's"
    try:
        pid = int((prefect_home() / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and server_port(pid) is not None:
        return f"a Prefect server (pid {pid}) runs on this PREFECT_HOME"
    return None


def first_picks(plan, worker, capacity, force: bool, may_replace: bool) -> list:
    """The jobs the flow's dispatcher would start first, placed on their node."""
    sizes, needs = Dispatcher.admission(plan, capacity)
    scheduler = SlotScheduler(Dispatcher.start_order(plan, worker), plan.pool, worker.max_concurrent, sizes, needs)
    for job in plan.jobs:
        if provenance.not_to_run(job, force, may_replace) is not None:
            scheduler.remove(job)  # (the flow's resume check records it)
    return [replace(queued.job, host=host) for queued, host in scheduler.take_ready(time.monotonic())]


def start_early(prepared, run_backends) -> int:
    """Start the run's first jobs now if this run may (see the module docstring); how many started."""
    config, plan, request = prepared.config, prepared.plan, prepared.request
    if why_not(config, plan) is not None:
        return 0
    try:
        if not home_lock.try_exclusive():
            return 0  # another run of this home is alive
    except OSError:
        return 0  # (a home that cannot hold the lock file)
    local = run_backends.local
    local.on_all_taken_over = home_lock.share_now
    ms_locks, started = LocalMsLocks(), 0
    for job in first_picks(plan, config.worker, run_backends.capacity, request.force, request.replace):
        job = run_backends.place(job)
        fds = ms_locks.try_lock(job, "starting")
        if fds is None:
            continue  # another run (of another PREFECT_HOME) images that MS: the flow will wait for it
        try:
            os.makedirs(job.out_dir, exist_ok=True)
            provenance.write(provenance.record_path(job.out_dir, job.name), provenance.in_progress(job, None))
        except OSError:
            ms_locks.release(fds)
            continue  # the flow's task says why, as for any job
        hand_over(job, fds)
        local.start_early(job)
        started += 1
    if not started:
        home_lock.share_now()
    return started
