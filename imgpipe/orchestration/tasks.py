"""Prefect tasks: each step of an imaging run, visible and timed in the Prefect UI."""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run
from prefect.states import Cancelled, Completed, Failed
from prefect.utilities.annotations import quote

from imgpipe.backends import RunBackends
from imgpipe.backends.job_script import NOT_THERE_YET
from imgpipe.backends.local import LocalBackend
from imgpipe.backends.probe import check_mpi
from imgpipe.core import events
from imgpipe.core.config import Config, WorkerConfig
from imgpipe.core.errors import ImgpipeError, NoData
from imgpipe.core.job_resources import size_text
from imgpipe.core.nodes import LOCALHOST, is_ssh
from imgpipe.core.plan import Job, Plan
from imgpipe.core.request import RunRequest
from imgpipe.core.results import (
    CANCELLED,
    FAILED,
    NO_DATA_YET,
    SKIPPED,
    JobResult,
    RunSummary,
    name_damaged_ms,
    name_out_of_memory,
)
from imgpipe.facts.ms_sizes import memory_estimate_of
from imgpipe.orchestration.dispatcher import JOB_ENDED
from imgpipe.orchestration.prefect_internals import api_only_logger, drain_logs_and_events
from imgpipe.prepare import plan_jobs, read_config, resolve_groups
from imgpipe.products import cleanup, image_stats, provenance
from imgpipe.products.job_outputs import finish, never_started, skipped, wsclean_version
from imgpipe.products.report import write_report


def _bad_input(err: ImgpipeError):
    """A mistake in the run's input: one line in the log, a Failed state, no traceback."""
    get_run_logger().error(str(err))
    return Failed(message=str(err), data=err)


@task(name="load-config", cache_policy=NO_CACHE)
def load_config_task(request: RunRequest) -> Config:
    try:
        return read_config(request)
    except ImgpipeError as err:
        return _bad_input(err)


@task(name="resolve-inputs", cache_policy=NO_CACHE)
def resolve_inputs_task(config: Config, inputs: list[str], combine: bool, combine_obs_ids: bool, cwd: str):
    """Groups and warnings; a NoData (nothing observed yet) as the value of a Completed state."""
    try:
        groups, warnings = resolve_groups(config, inputs, combine, combine_obs_ids, cwd)
    except NoData as err:
        return Completed(message=str(err), data=err)
    except ImgpipeError as err:
        return _bad_input(err)
    logger = get_run_logger()
    for warning in warnings:
        logger.warning(warning)
    logger.info("%d input(s) resolved into %d group(s)", len(inputs), len(groups))
    return groups, warnings


@task(name="plan-jobs", cache_policy=NO_CACHE)
def plan_jobs_task(config: Config, groups, warnings, cwd: str, dry_run: bool = False) -> Plan:
    try:
        plan = plan_jobs(config, groups, warnings, cwd, dry_run)
    except ImgpipeError as err:
        return _bad_input(err)
    logger = get_run_logger()
    anywhere = f"any of {','.join(plan.pool)}"
    for job in plan.jobs:
        logger.info("%s: %s", job.host or anywhere, job.command_line())
    return plan


@task(name="connect-nodes", cache_policy=NO_CACHE)
def connect_nodes_task(backends: RunBackends, hosts: list[str]) -> dict[str, str]:
    """Open the SSH connections now: an unreachable node is named before any job starts."""
    logger = get_run_logger()
    try:
        down = backends.reach_nodes(hosts, logger.warning)
    except ImgpipeError as err:
        return _bad_input(err)
    for why in down.values():
        logger.error("skipping unreachable node %s", why)
    return down


@task(name="find-dask-workers", cache_policy=NO_CACHE)
def find_dask_workers_task(dask_jobs, worker: WorkerConfig, hosts: list[str]) -> dict[str, str]:
    """The Dask workers of each node: a node without one is named before any job starts."""
    # prefect-dask and distributed: only for Dask runs
    from imgpipe.orchestration.dask_jobs import allowed_down

    logger = get_run_logger()
    try:
        down = allowed_down(dask_jobs.map_nodes(hosts), worker.skip_unreachable_nodes)
    except ImgpipeError as err:
        return _bad_input(err)
    for why in down.values():
        logger.error("skipping %s", why)
    return down


@task(name="check-mpi", cache_policy=NO_CACHE)
def check_mpi_task(config: Config, backends: RunBackends) -> None:
    """mpirun and wsclean-mp on the first MPI node, before any job (Debian's WSClean has no wsclean-mp)."""
    try:
        check_mpi(config, backends.ssh if is_ssh(config.nodes_mpi[0]) else None)
    except ImgpipeError as err:
        return _bad_input(err)
    get_run_logger().info("MPI over %s: %s", ",".join(config.nodes_mpi), " ".join(config.mpi.mpirun + config.mpi.wsclean_mp))


@task(name="resume-check", cache_policy=NO_CACHE)
def resume_check_task(plan: Plan, force: bool = False, replace: bool = False) -> dict[int, JobResult]:
    """Jobs not to run: done by an earlier run (its provenance record; ``force`` redoes
    them), or whose images would replace another job's (``replace`` allows it)."""
    out = {}
    logger = get_run_logger()
    for i, job in enumerate(plan.jobs):
        verdict = provenance.not_to_run(job, force, replace)
        if verdict is None:
            continue
        kind, record = verdict
        if kind in (provenance.REFUSED, provenance.BUSY):
            out[i] = JobResult(job, FAILED, provenance.not_run_reason(job, kind, record))
            logger.error("%s: %s", job.label, out[i].reason, extra=events.SHOWN)
        else:
            out[i] = skipped(job, record)
    done = sum(r.status != FAILED for r in out.values())
    if done:
        logger.info("%d job(s) done by an earlier run, skipped (--force redoes them; force=True for a deployment run)", done)
    return out


@task(name="report", cache_policy=NO_CACHE)
def report_task(summary: RunSummary) -> str | None:
    """report.html in the output root: every job with its quick-look, stats, command, log."""
    logger = get_run_logger()
    path = write_run_report(summary, logger)
    if path:
        logger.info("report: %s", path)
    return path


def write_run_report(summary: RunSummary, logger) -> str | None:
    """The run's report (see :func:`imgpipe.products.report.write_report`); a folder that
    cannot be written is a warning, never a failed night."""
    try:
        title = f"imgpipe run {flow_run.name or ''}".strip()
        if summary.night:
            title = f"night {summary.night}: {title}"
        return write_report(summary, f"{title} · {summary.grouping}" if summary.grouping else title)
    except OSError as err:
        logger.warning("cannot write the report: %s", err)
        return None


@task(name="slurm-allocation", cache_policy=NO_CACHE)
def slurm_allocation_task(backends: RunBackends) -> str:
    """One SLURM allocation for the whole run (slurm_nodes): the jobs become its steps."""
    logger = get_run_logger()
    job_id = backends.slurm.allocate(logger.info)
    size = backends.slurm.allocation_size
    each = f": {size[0].describe()} per node" if size else ""
    logger.info("SLURM allocation %s of %d node(s)%s", job_id, backends.worker.slurm_nodes, each)
    return job_id


def _job_run_name() -> str:
    """``wsclean SW01 20231201_NT04 @ node101 (attempt 2)``, from the task run's parameters.

    A name set here rather than with ``with_options`` per job: that rebuilds the task
    (reading its source to key it), ~2 ms per job on the dispatcher's thread.
    """
    parameters = task_run.parameters
    job = parameters["job"]
    job = job.unquote() if isinstance(job, quote) else job
    attempt = parameters.get("attempt", 1)
    return f"wsclean {job.label}" + (f" (attempt {attempt})" if attempt > 1 else "")


@task(name="wsclean", cache_policy=NO_CACHE, task_run_name=_job_run_name)
def run_job_task(
    job: Job, worker: WorkerConfig, attempt: int = 1, submission_id: str | None = None,
    backends: RunBackends | None = None, dask_stop: str | None = None, force: bool = False, replace: bool = False,
) -> JobResult:
    """Run one WSClean job on its node, then measure its image and write its provenance.

    Failed (or Cancelled) in Prefect if WSClean fails, with the JobResult as the state's data.
    ``backends``: the run's (in the flow's process). ``dask_stop``: the task runs on a Dask
    worker instead, which runs the job as a local process of its own and stops it when
    the run's Dask event of that name is set. ``force``, ``replace``: as the run's, for
    the check made again just before WSClean starts (another run may have written these
    images since the run began).
    """
    try:
        return _run_job(job, worker, attempt, submission_id, backends, dask_stop, force, replace)
    finally:
        if dask_stop:
            # A worker sends its logs in batches: send them now, while the run's API is
            # surely up (the embedded server stops as soon as the last job has ended).
            drain_logs_and_events(events=False)


def _failed_before_start(submission_id: str | None, result: JobResult):
    """A job that fails before its WSClean starts: its slot goes back at once, its task is Failed."""
    events.emit(JOB_ENDED, (submission_id, result))
    return Failed(message=f"{result.job.label}: {result.reason}", data=result)


def _run_job(job: Job, worker: WorkerConfig, attempt: int, submission_id: str | None, backends: RunBackends | None,
             dask_stop: str | None, force: bool = False, may_replace: bool = False):
    logger = get_run_logger()
    output = api_only_logger("imgpipe.wsclean_output", logger)  # WSClean's own lines: the UI and the job log, not the console
    where = job.host
    stop = finished = None
    if dask_stop:
        # distributed: only on a Dask worker
        from distributed import get_worker

        from imgpipe.orchestration.dask_jobs import watch_stop_event

        where = f"{job.host} (Dask worker {get_worker().address})"
        stop, finished = threading.Event(), threading.Event()
        watch_stop_event(dask_stop, stop, finished)
    if backends is not None:
        job = backends.place(job)  # its cores and memory on that node, before it is shown or recorded
    estimate = memory_estimate_of(job)
    # one line (each is a record in Prefect's database, per job): where, what it was given, the command
    given = f"; given {job.given.describe()}" if job.given is not None else ""
    expected = f"; memory estimate {size_text(estimate)}" if estimate is not None else ""
    logger.info("start on %s%s%s%s: %s", where, f" (attempt {attempt})" if attempt > 1 else "", given, expected,
                job.command_line())
    record = provenance.record_path(job.out_dir, job.name)
    verdict = provenance.not_to_run(job, force, may_replace) if attempt == 1 else None
    if verdict is not None and provenance.another_run_of_this_job(job, verdict):
        # this run holds the job's MSs: the other run's WSClean has ended, its record comes in seconds
        logger.info("%s: waiting for another imgpipe run (pid %s) to finish its record of these images", job.label,
                    verdict[1].get("imgpipe_pid"))
        verdict = provenance.after_the_other_run(job, verdict, force, may_replace)
    if verdict is not None and verdict[0] == provenance.DONE:  # another run made them since this one began
        result = replace(skipped(job, verdict[1]), attempt=attempt)
        events.emit(JOB_ENDED, (submission_id, result))
        logger.info("%s: %s", job.label, result.reason)
        return result
    if verdict is not None:
        result = JobResult(job, FAILED, provenance.not_run_reason(job, *verdict), attempt=attempt)
        logger.error("%s: %s", job.label, result.reason, extra=events.SHOWN)
        return _failed_before_start(submission_id, result)
    try:  # a crash must not look done; another run must see these images are being written
        try:
            os.makedirs(job.out_dir, exist_ok=True)
        except OSError:  # not visible here (an SSH node's own disk): no record here either
            pass
        if os.path.isdir(job.out_dir):
            provenance.mark_starting(record, job, str(flow_run.id) if flow_run.id else None)
    except OSError as err:  # the record of an earlier run would say "done": do not run over it
        result = JobResult(job, FAILED, f"cannot write the job's record {record}: {err.strerror}", attempt=attempt)
        logger.error("%s: %s", result.status, result.reason, extra=events.SHOWN)
        return _failed_before_start(submission_id, result)
    version: dict[str, str] = {}

    def on_line(line: str) -> None:
        output.info(line)
        if "v" not in version and (found := wsclean_version(line)):
            version["v"] = found
            # a real WSClean runs (its banner), so an image will be measured: the image
            # libraries load meanwhile (never for a stand-in that writes no image)
            image_stats.load_in_background()

    events.emit("started", job)
    try:
        if dask_stop:  # here, on the Dask worker, is where the job runs
            ran = LocalBackend(worker).run(replace(job, host=LOCALHOST), on_line, stop)
            result = replace(ran, job=replace(ran.job, host=job.host), attempt=attempt)
            if ran.job.given is not None and job.given is None:
                logger.info("given %s", ran.job.given.describe())
        else:
            assert backends is not None  # (a flow-process task gets the run's)
            result = replace(backends.run_job(job, on_line), attempt=attempt)
    finally:
        if finished is not None:
            finished.set()
    result = name_damaged_ms(name_out_of_memory(replace(result, memory_estimate_mib=estimate)))
    if result.status == FAILED and result.reason.startswith(NOT_THERE_YET) and (job.obs_id or job.sw):
        # a night's MS (or its calibrated column) not (yet) on its node, as at planning:
        # skipped, the others imaged
        result = replace(result, status=SKIPPED, reason=f"{NO_DATA_YET}: {result.reason} ({job.host})")
    if result.over_memory and result.max_rss_mb is not None and result.job.given is not None:  # as the original worker pool warned
        logger.warning("%s: peak memory %s, above the %s it was given (%s)", job.label, size_text(result.max_rss_mb),
                       size_text(result.job.given.mem_mb), result.job.given.why)
    if result.status == CANCELLED:
        who = backends.stopped_by if backends is not None else None
        result = replace(result, reason=f"cancelled by {who or 'the run being stopped'}")
    removed: list[str] = []
    if not result.ok and not never_started(result):  # before its MS locks go back
        removed = cleanup.remove(cleanup.wsclean_temporary_files(job))
        if removed:
            logger.info("removed %d temporary file(s) WSClean left: %s", len(removed), " ".join(removed))
    events.emit(JOB_ENDED, (submission_id, result))  # the dispatcher reuses the slot now
    result = finish(result, version.get("v"), str(flow_run.id) if flow_run.id else None, logger.warning,
                    keep_partial=worker.keep_partial_images, removed=removed)
    if result.stats is not None:
        st = result.stats
        logger.info("image %s: peak %.4g %s, rms %.3g, dynamic range %s", result.image, st.peak, st.unit, st.rms,
                    f"{st.dynamic_range:.0f}" if st.dynamic_range else "n/a")
    if result.no_data:
        logger.warning("%s: %s", job.label, result.reason, extra=events.SHOWN)
        return result
    if not result.ok:
        # A Failed state, not an exception: an expected outcome needs no traceback in the log.
        if result.status == CANCELLED:  # what the person or the schedule asked for: no error
            logger.warning("%s: %s (log: %s)", result.status, result.reason, job.log_path, extra=events.SHOWN)
        else:
            logger.error("%s: %s (log: %s)", result.status, result.reason, job.log_path, extra=events.SHOWN)
        state = Cancelled if result.status == CANCELLED else Failed
        return state(message=f"{job.label}: {result.reason}", data=result)
    peak = "" if result.max_rss_mb is None else f", peak memory {size_text(result.max_rss_mb)}" + (
        f" ({result.max_rss_mb / estimate:.2f} of the estimate)" if estimate else "")
    logger.info("done in %.1f s%s, log: %s", result.wall_s, peak, job.log_path)
    if result.slurm_job:
        logger.info("SLURM job %s", result.slurm_job)
    return result
