"""The ``imgpipe`` Prefect flow: load config → resolve inputs → plan → reach nodes → run WSClean jobs.

Started by the CLI (embedded Prefect, no server to set up) and by deployments
(``flows/imgpipe_flow.py``). Parameters stay plain and serialisable for that reason.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from datetime import datetime
from datetime import timezone as dt_timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from imgpipe.backends import RunBackends
from imgpipe.core import events
from imgpipe.core.ms_sharing import sharing_notes
from imgpipe.core.plan import run_name, write_plan_json
from imgpipe.core.request import RunRequest
from imgpipe.core.results import CANCELLED, FAILED, JobResult, RunSummary
from imgpipe.orchestration.dispatcher import Dispatcher
from imgpipe.orchestration.embedded_server import serves
from imgpipe.orchestration.ms_locks import LocalMsLocks, PrefectMsLocks
from imgpipe.orchestration.node_limits import NodeLimits
from imgpipe.orchestration.tasks import (
    check_mpi_task,
    connect_nodes_task,
    find_dask_workers_task,
    load_config_task,
    plan_jobs_task,
    report_task,
    resolve_inputs_task,
    resume_check_task,
    run_job_task,
    slurm_allocation_task,
)
from imgpipe.prepare import PreparedRun, expand_inputs


def api_url() -> str | None:
    return PREFECT_API_URL.value()


def scheduled_time() -> datetime:
    """When this run was scheduled to start (a deployment run), else now."""
    when = flow_run.scheduled_start_time
    return when if isinstance(when, datetime) else datetime.now(dt_timezone.utc)


def _name_this_run(name: str) -> None:
    """Rename the running flow run (its planned job count is known only now)."""
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run_id=flow_run.id, name=name)
    except Exception as err:  # a name is a convenience: never fail a night for it
        get_run_logger().warning("could not name the flow run %r: %s", name, err)


def _initial_name() -> str:
    params = flow_run.parameters
    return run_name(params.get("config", "imgpipe"), params.get("patterns") or [])


def _prepare(request: RunRequest, logger) -> PreparedRun:
    """A deployment run's preparation, each step a task of the flow run."""
    when = scheduled_time()
    inputs = expand_inputs(request, when)
    if list(inputs) != list(request.patterns):
        logger.info("patterns for the run of %s (%s): %s", when.isoformat(), request.timezone, " ".join(inputs))
    cfg = load_config_task(request)
    groups, warnings = resolve_inputs_task(cfg, list(inputs), request.combine, request.combine_obs_ids, request.cwd)
    plan = plan_jobs_task(cfg, groups, warnings, request.cwd)
    if request.plan_json:
        write_plan_json(plan, request.plan_json)
    return PreparedRun(request, inputs, cfg, plan)


def _outcome(job, future) -> JobResult:
    future.wait()  # the task has returned; this records its final state
    state = future.state
    if state.is_completed():
        return future.result()
    err = state.result(raise_on_failure=False)
    if isinstance(err, JobResult):  # the task's own Failed state
        return err
    status = CANCELLED if state.is_cancelled() else FAILED
    return JobResult(job, status, f"{state.name}: {err}")


@flow(name="imgpipe", flow_run_name=_initial_name, task_runner=ThreadPoolTaskRunner(max_workers=512), validate_parameters=False)
def imgpipe_flow(
    config: str,
    patterns: list[str],
    combine: bool = False,
    combine_obs_ids: bool = False,
    dry_run: bool | None = None,
    force: bool = False,
    timezone: str = "UTC",
    plan_json: str | None = None,
    nodes_mpi: str | None = None,
    cwd: str | None = None,
    replace: bool = False,
    prepared: PreparedRun | None = None,
    backends: RunBackends | None = None,
) -> RunSummary:
    """Image Measurement Sets with WSClean as CONFIG says.

    patterns: MS paths, or obs_id patterns with a data handler (``GLOB[,GLOB][:SWGLOB]``);
    ``{yesterday}``/``{today}`` (optionally ``{yesterday:%Y-%m-%d}``) stand for the run's
    scheduled date in ``timezone``. force: redo jobs already done by an earlier run.
    replace: let a job replace the images of another job (other MSs) under its out-dir/name.
    nodes_mpi: ``node1,node2``: each job is one distributed WSClean over these nodes.
    prepared: the run as the command line prepared it (its plan, its node checks); a
    deployment run leaves it out and prepares here, each step a task. backends: the
    command line's (they hold its node connections); otherwise the flow makes its own,
    released when it ends.
    """
    started = time.time()
    logger = get_run_logger()
    if prepared is None:
        request = RunRequest(config, tuple(patterns), combine, combine_obs_ids, nodes_mpi, dry_run, force, timezone,
                             plan_json, cwd or os.getcwd(), replace)
        prepared = _prepare(request, logger)
    else:
        logger.info("planned by the command line: %d job(s)", len(prepared.plan.jobs))
    request, cfg, plan = prepared.request, prepared.config, prepared.plan
    _name_this_run(run_name(request.config, prepared.inputs, len(plan.jobs)))
    events.emit("planned", plan)
    for note in sharing_notes(plan.jobs):
        logger.info(note)
    if cfg.worker.dry_run if request.dry_run is None else request.dry_run:
        for line in plan.dry_run_lines():
            logger.info("dry run: %s", line)
        return RunSummary([], time.time() - started)

    not_to_run = resume_check_task(plan, request.force, request.replace)
    hosts = plan.hosts()
    with ExitStack() as stack:  # releases, in reverse order and whatever raised: node slots, then backends
        run_backends = backends if backends is not None else stack.enter_context(RunBackends(cfg.worker))
        dask_jobs = None
        if cfg.prefect.dask:
            # prefect-dask and distributed: only for Dask runs
            from imgpipe.orchestration.dask_jobs import DaskJobs

            dask_jobs = stack.enter_context(DaskJobs(cfg.prefect, cfg.worker.max_concurrent, logger))
            down = find_dask_workers_task(dask_jobs, cfg.worker, hosts)
        elif prepared.down is not None:  # checked by the command line, connections kept
            down = prepared.down
        else:
            down = connect_nodes_task(quote(run_backends), hosts)
        if cfg.nodes_mpi and not prepared.mpi_checked:
            check_mpi_task(cfg, quote(run_backends))
        limits = NodeLimits([h for h in hosts if h not in down], cfg.worker.max_concurrent)
        stack.callback(limits.close)

        def start(job, attempt, submission_id):
            # No task tags: a tag makes Prefect take a tag-concurrency lease per task (two
            # more API calls on the path of every job); node slots are NodeLimits' work.
            if dask_jobs is not None:
                parameters = dict(job=job, worker=cfg.worker, attempt=attempt, submission_id=submission_id,
                                  dask_stop=dask_jobs.stop_event_name, force=request.force, replace=request.replace)
                return dask_jobs.submit(run_job_task, parameters, job.host)
            # quote: plain records with no futures inside, so Prefect need not walk them
            # (twice per task run) on the way to WSClean
            return run_job_task.submit(quote(job), quote(cfg.worker), attempt, submission_id, quote(run_backends),
                                       force=request.force, replace=request.replace)

        # MS locks: this machine's always; Prefect's too when other machines may share the server
        ms_locks = (LocalMsLocks(),) if serves(api_url()) else (LocalMsLocks(), PrefectMsLocks(limits))
        dispatcher = Dispatcher(plan, cfg.worker, start, _outcome, limits, logger, ms_locks, flow_run.name or "")
        try:
            if cfg.worker.slurm_nodes and plan.jobs:  # (inside: an interrupted request is cancelled too)
                slurm_allocation_task(quote(run_backends))
            results = dispatcher.run(down, not_to_run)
        except BaseException:
            # Ctrl-C, or SIGTERM (how a Prefect worker cancels a deployment run): stop every
            # running WSClean now, here and on the nodes, before the process goes away.
            if dask_jobs is not None:
                dask_jobs.stop()
            run_backends.cancel_all()
            partial = RunSummary(dispatcher.partial_results(), time.time() - started, cfg.worker.max_concurrent)
            events.emit("interrupted", partial)  # the CLI prints it
            for line in partial.lines():
                logger.warning(line)
            raise
    summary = RunSummary(results, time.time() - started, cfg.worker.max_concurrent, plan.images_root())
    report = summary.report = report_task(summary)
    markdown = summary.markdown() + (f"\n\nReport: `{report}`" if report else "")
    create_markdown_artifact(markdown=markdown, key="imgpipe-summary", description="imgpipe jobs")
    for line in summary.lines():
        logger.info(line)
    if not summary.ok:
        return Failed(message=f"{summary.n_failed} of {len(summary.results)} job(s) failed", data=summary)
    return summary
