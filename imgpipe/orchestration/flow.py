"""The ``imgpipe`` Prefect flow: load config → resolve inputs → plan → reach nodes → run WSClean jobs.

Started by the CLI (embedded Prefect, no server to set up) and by deployments
(``flows/imgpipe_flow.py``). Parameters stay plain and serialisable for that reason.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from datetime import datetime
from datetime import timezone as dt_timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from imgpipe.backends import RunBackends
from imgpipe.core import events
from imgpipe.core.date_tokens import expand_date_tokens, has_date_token, night_of
from imgpipe.core.errors import ConfigError, ImgpipeError, Interrupted, NoData
from imgpipe.core.grouping import describe as describe_grouping
from imgpipe.core.job_resources import place, size_unknown
from imgpipe.core.ms_sharing import sharing_notes
from imgpipe.core.plan import NO_DATA, output_root, run_name
from imgpipe.core.request import RunRequest
from imgpipe.core.results import CANCELLED, FAILED, JobResult, RunSummary
from imgpipe.orchestration.console_relay import relay_console
from imgpipe.orchestration.deployed_config import config_refused, deployment_run
from imgpipe.orchestration.dispatcher import Dispatcher
from imgpipe.orchestration.finished_task_runs import FinishedTaskRuns
from imgpipe.orchestration.ms_locks import LocalMsLocks, PrefectMsLocks
from imgpipe.orchestration.node_limits import NodeLimits
from imgpipe.orchestration.server_watch import CancelWatch, server_answers, wait_for_server
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
    write_run_report,
)
from imgpipe.prepare import PreparedRun, expand_inputs, too_big_for_known_nodes


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
    """The run's name from its start: what it images, the night resolved (``{yesterday}_*``
    → ``20231201_*``), so that a quiet or failed night is found by its date too."""
    params = flow_run.parameters
    patterns = list(params.get("patterns") or [])
    try:
        patterns = [expand_date_tokens(p, scheduled_time(), params.get("timezone") or "UTC") for p in patterns]
    except ImgpipeError:  # (a bad token: said once the run reads its patterns)
        pass
    return run_name(params.get("config", "imgpipe"), patterns)


class RunFailed(Exception):
    """A run that ended Failed for a known reason (jobs failed, bad input, no data when
    asked to fail): the state's data, carrying the run's summary."""

    def __init__(self, message: str, summary: RunSummary):
        super().__init__(message)
        self.summary = summary


def _failed(message: str, summary: RunSummary):
    return Failed(message=message, data=RunFailed(message, summary))


class _NoTracebackForAKnownFailure(logging.Filter):
    """A deployment run that ends Failed makes Prefect's engine raise the state's data at
    the very end and log it with a traceback ("Engine execution exited with unexpected
    exception"). For a RunFailed the state's message already says all: that line goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RunFailed))


logging.getLogger("prefect.flow_runs").addFilter(_NoTracebackForAKnownFailure())


class _NotRun(Exception):
    """The run stops before any job: bad input (``error``), or nothing to image (NoData)."""

    def __init__(self, error: Exception, inputs=(), config=None):
        super().__init__(str(error))
        self.error, self.inputs, self.config = error, tuple(inputs), config


def _step(task, *args, inputs=(), config=None):
    """Run a preparation task; its Failed state (bad input, already logged as one line) or
    its NoData becomes :class:`_NotRun`. Any other exception is a bug: raised as such."""
    state = task(*args, return_state=True)
    value = state.result(raise_on_failure=False)
    if state.is_failed():
        if isinstance(value, ImgpipeError):
            raise _NotRun(value, inputs, config)
        raise value if isinstance(value, BaseException) else RuntimeError(state.message)
    if isinstance(value, NoData):
        raise _NotRun(value, inputs, config)
    return value


def _prepare(request: RunRequest, logger) -> PreparedRun:
    """A deployment run's preparation, each step a task of the flow run."""
    when = scheduled_time()
    try:
        inputs = expand_inputs(request, when)
    except ImgpipeError as err:
        logger.error(str(err))
        raise _NotRun(err, request.patterns) from None
    if list(inputs) != list(request.patterns):
        logger.info("patterns for the run of %s (%s): %s", when.isoformat(), request.timezone, " ".join(inputs))
    if why := config_refused(request.config):
        logger.error(why)
        raise _NotRun(ConfigError(why), inputs)
    cfg = _step(load_config_task, request, inputs=inputs)
    groups, warnings = _step(resolve_inputs_task, cfg, list(inputs), request.combine, request.combine_obs_ids,
                             request.cwd, inputs=inputs, config=cfg)
    dry_run = cfg.worker.dry_run if request.dry_run is None else request.dry_run
    plan = _step(plan_jobs_task, cfg, groups, warnings, request.cwd, dry_run, inputs=inputs, config=cfg)
    return PreparedRun(request, inputs, cfg, plan)


def _looked_for(request: RunRequest, inputs) -> str:
    return f"looked for {' '.join(inputs or request.patterns) or '(no pattern)'} with {request.config}"


def _summary_artifact(summary: RunSummary) -> None:
    """The run's ``imgpipe-summary`` artifact (its report's path at the end, when written)."""
    markdown = summary.markdown() + (f"\n\nReport: `{summary.report}`" if summary.report else "")
    create_markdown_artifact(markdown=markdown, key="imgpipe-summary", description="imgpipe jobs")


def _night(request: RunRequest) -> str | None:
    """The night the run images, when its patterns name it by date (its report's name)."""
    try:
        return night_of(request.patterns, scheduled_time(), request.timezone)
    except ImgpipeError:  # (a bad token: said where the patterns are expanded)
        return None


def _record_run(summary: RunSummary, logger, request: RunRequest | None = None) -> RunSummary:
    """The record of a run that stopped early or was stopped: its report (where its
    output folder is visible) and its artifact, each written if it can be."""
    if request is not None:
        summary.night = _night(request)
    summary.report = write_run_report(summary, logger)
    try:
        _summary_artifact(summary)
    except Exception as err:  # (a run being stopped may have lost its API)
        logger.warning("cannot write the run's artifact: %s", err)
    return summary


def _nothing_to_image(request: RunRequest, inputs, cfg, why: str, started: float, fail: bool, logger):
    """A quiet night (nothing observed, nothing arrived, everything done): Completed with
    ``why`` and its record, or Failed when the deployment asks (``fail_when_no_data``)."""
    root = output_root(cfg.out_dir, request.cwd) if cfg is not None else None
    summary = _record_run(RunSummary([], time.time() - started, output_root=root,
                                     note=f"{why}; {_looked_for(request, inputs)}"), logger, request)
    if fail:
        return _failed(f"{why} (fail_when_no_data)", summary)
    logger.info("%s: nothing to image", why)
    return Completed(message=why, data=summary)


def _stopped_by(err: BaseException, command_line: bool) -> str:
    """Who or what stopped a run, for its jobs' reasons (``command_line``: the run is the
    command line's, whose SIGTERM Prefect's own handler may have taken)."""
    if isinstance(err, Interrupted):
        return err.who
    if isinstance(err, TerminationSignal):
        return "SIGTERM to imgpipe" if command_line else "a cancel in Prefect (or SIGTERM to the flow run)"
    if isinstance(err, KeyboardInterrupt):
        return "Ctrl-C"
    return f"an error in imgpipe ({type(err).__name__}: {err})"


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


@flow(name="imgpipe", flow_run_name=_initial_name, validate_parameters=False,
      task_runner=ThreadPoolTaskRunner(max_workers=512))  # type: ignore[arg-type]  # (Prefect's generic runner type)
def imgpipe_flow(
    config: str,
    patterns: list[str],
    combine: bool = False,
    combine_obs_ids: bool = False,
    dry_run: bool | None = None,
    force: bool = False,
    timezone: str = "UTC",
    nodes_mpi: str | None = None,
    replace: bool = False,
    fail_when_no_data: bool = False,
    prepared: PreparedRun | None = None,
    backends: RunBackends | None = None,
) -> RunSummary | State:
    """Image Measurement Sets with WSClean as CONFIG says.

    patterns: MS paths, or obs_id patterns with a data handler (``GLOB[,GLOB][:SWGLOB]``);
    ``{yesterday}``/``{today}`` (optionally ``{yesterday:%Y-%m-%d}``) stand for the run's
    scheduled date in ``timezone``. force: redo jobs already done by an earlier run.
    replace: let a job replace the images of another job (other MSs) under its out-dir/name.
    nodes_mpi: ``node1,node2``: each job is one distributed WSClean over these nodes.
    fail_when_no_data: a night with nothing to image (no obs_id matched, no MS arrived,
    every job done before) ends Failed instead of Completed (for those who want a page).
    prepared: the run as the command line prepared it (its plan, its node checks); a
    deployment run leaves it out and prepares here, each step a task. backends: the
    command line's (they hold its node connections); otherwise the flow makes its own,
    released when it ends.
    """
    started = time.time()
    logger = get_run_logger()
    deployed = deployment_run()
    if prepared is None and deployed:  # its worker may die before it: see console_relay
        relay_console()
    if (prepared is not None or backends is not None) and deployed:
        return _failed("prepared and backends are the command line's own objects, not deployment parameters",
                       RunSummary([], 0.0))
    if prepared is None:
        request = RunRequest(config, tuple(patterns), combine, combine_obs_ids, nodes_mpi, dry_run, force, timezone,
                             os.getcwd(), replace)
        try:
            prepared = _prepare(request, logger)
        except _NotRun as stop:
            if isinstance(stop.error, NoData) and not any(map(has_date_token, request.patterns)):
                # a pattern that names no night by date ({yesterday}) and matches nothing: a typo, not a quiet night
                why = (f"{stop.error}: a pattern without {{yesterday}} or {{today}} that matches nothing is a "
                       "mistake, not a quiet night")
                summary = _record_run(RunSummary([], time.time() - started,
                                                 note=f"not run: {why}; {_looked_for(request, stop.inputs)}"), logger,
                                      request)
                return _failed(why, summary)
            if isinstance(stop.error, NoData):
                return _nothing_to_image(request, stop.inputs, stop.config, f"no data: {stop.error}", started,
                                         fail_when_no_data, logger)
            summary = _record_run(RunSummary([], time.time() - started,
                                             note=f"not run: {stop.error}; {_looked_for(request, stop.inputs)}"), logger, request)
            return _failed(str(stop.error), summary)
    else:
        logger.info("planned by the command line: %d job(s)", len(prepared.plan.jobs))
    request, cfg, plan = prepared.request, prepared.config, prepared.plan
    _name_this_run(run_name(request.config, prepared.inputs, len(plan.jobs)))
    events.emit("planned", plan)
    for note in sharing_notes(plan.jobs):
        logger.info(note)
    if cfg.worker.dry_run if request.dry_run is None else request.dry_run:
        if too_big := too_big_for_known_nodes(cfg, plan):  # what the run would refuse
            return _failed(too_big, RunSummary([], time.time() - started))
        for line in plan.dry_run_lines():
            logger.info("dry run: %s", line)
        return RunSummary([], time.time() - started)
    if not plan.jobs:
        missing = "; ".join(w for w in plan.warnings if w.endswith(NO_DATA)) or "no job planned"
        return _nothing_to_image(request, prepared.inputs, cfg, f"no data yet: {missing}", started, fail_when_no_data,
                                 logger)

    grouping = describe_grouping(cfg.data_handler is not None, request.combine, request.combine_obs_ids)
    not_to_run = resume_check_task(plan, request.force, request.replace)
    plan = plan.shares_left(not_to_run, cfg.worker.max_concurrent)  # a lone job left gets its whole node
    # only the nodes of jobs still to run must be reached: a night done but for a dead node's
    # jobs is done, whatever that node's state
    hosts = plan.hosts([job for i, job in enumerate(plan.jobs) if i not in not_to_run])
    with ExitStack() as stack:  # releases, in reverse order and whatever raised: node slots, then backends
        run_backends = backends if backends is not None else stack.enter_context(RunBackends(cfg.worker))
        dask_jobs = None
        if cfg.prefect.dask:
            # prefect-dask and distributed: only for Dask runs
            from imgpipe.orchestration.dask_jobs import DaskJobs

            dask_jobs = stack.enter_context(DaskJobs(cfg.prefect, cfg.worker.max_concurrent, logger))
        try:
            if dask_jobs is not None:
                down = _step(find_dask_workers_task, dask_jobs, cfg.worker, hosts)
            elif prepared.down is not None:  # checked by the command line, connections kept
                down = prepared.down
            else:
                down = _step(connect_nodes_task, quote(run_backends), hosts)
            if cfg.nodes_mpi and not prepared.mpi_checked:
                _step(check_mpi_task, cfg, quote(run_backends))
        except _NotRun as stop:
            summary = RunSummary([JobResult(job, FAILED, f"not run: {stop.error}") for job in plan.jobs],
                                 time.time() - started, cfg.worker.max_concurrent, plan.images_root(), note=f"not run: {stop.error}")
            _record_run(summary, logger, request)
            return _failed(str(stop.error), summary)
        for host in hosts:  # each node's size, as the jobs' shares and admission will use it
            if host not in down:
                size = dask_jobs.capacity(host) if dask_jobs is not None else run_backends.capacity(host)
                logger.info("node %s: %s", host, size.describe() if size else size_unknown(host, cfg.worker, dask_jobs is not None))
        limits = NodeLimits([h for h in hosts if h not in down], cfg.worker.max_concurrent, logger)
        stack.callback(limits.close)

        def start(job, attempt, submission_id):
            # No task tags: a tag makes Prefect take a tag-concurrency lease per task (two
            # more API calls on the path of every job); node slots are NodeLimits' work.
            if dask_jobs is not None:
                job = place(job, dask_jobs.capacity(job.host))  # (on the worker it is placed already)
                parameters = dict(job=job, worker=cfg.worker, attempt=attempt, submission_id=submission_id,
                                  dask_stop=dask_jobs.stop_event_name, force=request.force, replace=request.replace)
                return dask_jobs.submit(run_job_task, parameters, job.host)
            # quote: plain records with no futures inside, so Prefect need not walk them
            # (twice per task run) on the way to WSClean
            return run_job_task.submit(quote(job), quote(cfg.worker), attempt, submission_id,  # type: ignore[call-overload]
                                       quote(run_backends), force=request.force, replace=request.replace)

        # MS locks: this machine's always; Prefect's too when asked and other machines may share the server
        server_wide = cfg.prefect.ms_locks == "server" and not prepared.private_server
        ms_locks = (LocalMsLocks(), PrefectMsLocks(limits)) if server_wide else (LocalMsLocks(),)
        finished = FinishedTaskRuns()

        def outcome(job, future):
            result = _outcome(job, future)
            finished.forget(getattr(future, "task_run_id", None))
            return result

        dispatcher = Dispatcher(plan, cfg.worker, start, outcome, limits, logger, ms_locks, flow_run.name or "",
                                capacity=dask_jobs.capacity if dask_jobs is not None else run_backends.capacity)
        # a deployment run's own watch for a cancel (Prefect's stops watching after an outage)
        watch = stack.enter_context(CancelWatch(flow_run.id)) if deployed and flow_run.id else None
        try:
            if cfg.worker.slurm_nodes and plan.jobs:  # (inside: an interrupted request is cancelled too)
                slurm_allocation_task(quote(run_backends))  # type: ignore[call-overload]  # (quote: passed unwalked)
            results = dispatcher.run(down, not_to_run)
        except BaseException as err:
            if watch is not None:
                watch.stopping()
            # Ctrl-C, or SIGTERM (how a Prefect worker cancels a deployment run): stop every
            # running WSClean now, here and on the nodes, before the process goes away.
            who = _stopped_by(err, backends is not None)
            if dask_jobs is not None:
                dask_jobs.stop()
            run_backends.cancel_all(who)
            partial = RunSummary(dispatcher.partial_results(who), time.time() - started, cfg.worker.max_concurrent,
                                 plan.images_root(), note=f"stopped by {who}", grouping=grouping)
            _record_run(partial, logger, request)  # a stopped run leaves its record too
            events.emit("interrupted", partial)  # the CLI prints it
            for line in partial.lines():
                logger.warning(line, extra=events.SHOWN)
            if watch is not None and watch.fired and isinstance(err, TerminationSignal):
                # stopped by its own watch for a cancel: no worker will mark it Cancelled
                return Cancelled(message=f"stopped by a cancel in Prefect: {partial.counts()}", data=partial)
            if not (isinstance(err, KeyboardInterrupt) or (isinstance(err, TerminationSignal) and backends is not None)):
                # (a deployment run's cancel, TerminationSignal, goes on to Prefect's engine,
                # which ends the run Cancelled and sends its last logs; an error is an error)
                raise
            # asked to stop (Ctrl-C, SIGINT or SIGTERM to imgpipe): the run ends Cancelled,
            # not Crashed (kept for a process that died outright)
            return Cancelled(message=f"stopped by {who}: {partial.counts()}", data=partial)
    summary = RunSummary(results, time.time() - started, cfg.worker.max_concurrent, plan.images_root(), grouping=grouping,
                         night=_night(request))
    all_done = summary.ok and summary.n_skipped == len(results)
    if all_done:
        summary.note = f"nothing to image: all {len(results)} job(s) done by an earlier run (--force redoes them; force=True for a deployment run)"
    if deployed and not server_answers():  # the night ended in a server outage
        summary.report = write_run_report(summary, logger)  # on disk now, then its end recorded once it is back
        wait_for_server(logger)
    else:
        # (quoted: Prefect need not walk every job's result)
        summary.report = report_task(quote(summary))  # type: ignore[call-overload]
    _summary_artifact(summary)
    for line in summary.lines():
        logger.info(line, extra=events.SHOWN)
    if all_done:
        if fail_when_no_data:
            return _failed(f"{summary.note} (fail_when_no_data)", summary)
        return Completed(message=summary.note, data=summary)
    if not summary.ok:
        return _failed(f"{sum(not r.ok for r in summary.results)} of {len(summary.results)} job(s) did not end ok: "
                       f"{summary.counts()}", summary)
    return summary
