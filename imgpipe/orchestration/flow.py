"""The ``imgpipe`` Prefect flow: load config → resolve inputs → plan → run WSClean jobs.

Started by the CLI (embedded Prefect, no server to set up) and by deployments
(``flows/imgpipe_flow.py``). Parameters stay plain and serialisable for that reason.
"""

from __future__ import annotations

import os
import queue
import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from imgpipe import events
from imgpipe.execution import local
from imgpipe.orchestration.tasks import (
    load_config_task,
    plan_jobs_task,
    resolve_inputs_task,
    run_job_task,
)
from imgpipe.plan import write_plan_json
from imgpipe.results import CANCELLED, FAILED, JobResult, RunSummary
from imgpipe.scheduling import SlotScheduler


def _task_run_name(job) -> str:
    return f"wsclean {job.label}"


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


def _markdown(summary: RunSummary) -> str:
    rows = ["| job | host | state | wall (s) | exit | log |", "|---|---|---|---|---|---|"]
    for r in summary.results:
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else ""
        exit_ = "" if r.exit_code is None else str(r.exit_code)
        rows.append(f"| {r.job.label} | {r.job.host} | {r.status} {r.reason} | {wall} | {exit_} | {r.job.log_path} |")
    return "\n".join([f"**{summary.n_ok} ok, {summary.n_failed} failed** in {summary.wall_s:.1f} s", "", *rows])


@flow(name="imgpipe", task_runner=ThreadPoolTaskRunner(max_workers=512), validate_parameters=False)
def imgpipe_flow(
    config: str,
    inputs: list[str],
    combine: bool = False,
    combine_obs_ids: bool = False,
    dry_run: bool | None = None,
    plan_json: str | None = None,
    cwd: str | None = None,
) -> RunSummary:
    """Image Measurement Sets (paths, or obs_id patterns with a data handler) with WSClean."""
    started = time.time()
    logger = get_run_logger()
    cwd = cwd or os.getcwd()
    cfg = load_config_task(config)
    groups, warnings = resolve_inputs_task(cfg, list(inputs), combine, combine_obs_ids, cwd)
    plan = plan_jobs_task(cfg, groups, warnings, cwd)
    if plan_json:
        write_plan_json(plan, plan_json)
    events.emit("planned", plan)
    if cfg.worker.dry_run if dry_run is None else dry_run:
        for line in plan.dry_run_lines():
            logger.info("dry run: %s", line)
        return RunSummary([], time.time() - started)

    local.reset()
    scheduler = SlotScheduler(plan.jobs, cfg.worker.max_concurrent)
    finished: queue.Queue = queue.Queue()
    results: dict[int, JobResult] = {}
    order = {id(job): i for i, job in enumerate(plan.jobs)}
    in_flight = 0
    while scheduler.pending or in_flight:
        for job in scheduler.take_ready():
            future = run_job_task.with_options(task_run_name=_task_run_name(job)).submit(
                job, cfg.worker.env_file
            )
            future.add_done_callback(lambda f, job=job: finished.put((job, f)))
            in_flight += 1
        job, future = finished.get()
        in_flight -= 1
        scheduler.release(job)
        results[order[id(job)]] = _outcome(job, future)

    summary = RunSummary([results[i] for i in sorted(results)], time.time() - started)
    create_markdown_artifact(markdown=_markdown(summary), key="imgpipe-summary", description="imgpipe jobs")
    for line in summary.lines():
        logger.info(line)
    if not summary.ok:
        return Failed(message=f"{summary.n_failed} of {len(summary.results)} job(s) failed", data=summary)
    return summary
