"""Run a job through SLURM (``nodes = 'slurm'``): ``srun`` starts the same bash wrapper.

One ``srun`` per WSClean run, started here, blocking until the job ends; SLURM picks
the node. The wrapper reports ``$SLURM_JOB_ID`` so the id is in the job's log, the
summary and the provenance, and so that a cancel can ``scancel`` exactly what was
submitted. With ``slurm_nodes = N`` the jobs are steps of one allocation of N nodes
(``salloc --no-shell``, then ``srun --jobid``), so a night's batch queues once.
``max_time`` becomes ``--time`` (rounded up to minutes, plus the kill grace, as a
backstop: the wrapper stops the job at max_time itself).
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
from typing import Callable

from imgpipe.errors import ImgpipeError
from imgpipe.execution import local
from imgpipe.plan import Job
from imgpipe.results import JobResult

_allocation: dict[str, str] = {}
_lock = threading.Lock()


def time_limit(worker) -> list[str]:
    """``--time=<minutes>`` for max_time (plus the kill grace), or nothing."""
    if worker.max_time is None:
        return []
    return [f"--time={math.ceil((worker.max_time + worker.kill_grace_s) / 60)}"]


def srun_argv(job: Job, worker, allocation: str | None = None) -> list[str]:
    """The ``srun`` command that runs one job (the wrapper's argv follows it)."""
    argv = ["srun", f"--job-name=imgpipe:{job.name}", "--ntasks=1", "--nodes=1", *time_limit(worker)]
    if allocation:
        argv += [f"--jobid={allocation}", "--exact"]
    return [*argv, *worker.slurm_options]


def run_slurm(job: Job, worker, on_line: Callable[[str], None] = lambda line: None) -> JobResult:
    """Run ``job`` with srun (in the run's allocation if there is one)."""
    launcher = srun_argv(job, worker, _allocation.get("id"))
    return local.run_local(job, worker.env_file, on_line, worker.kill_grace_s, worker.max_time, tuple(launcher))


def allocate(worker, on_line: Callable[[str], None] = lambda line: None) -> str:
    """``salloc --no-shell`` of ``slurm_nodes`` nodes for this run; returns the SLURM job id."""
    argv = ["salloc", "--no-shell", f"--nodes={worker.slurm_nodes}", "--job-name=imgpipe", *worker.slurm_options]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise ImgpipeError(f"cannot run salloc: {err.strerror} (is SLURM installed here?)") from None
    text = res.stdout + res.stderr
    for line in text.splitlines():
        on_line(line)
    m = re.search(r"Granted job allocation (\d+)", text)
    if res.returncode != 0 or m is None:
        raise ImgpipeError(f"salloc failed (exit {res.returncode}): {text.strip().splitlines()[-1] if text.strip() else 'no output'}")
    with _lock:
        _allocation["id"] = m.group(1)
    return m.group(1)


def release() -> None:
    """End the run's allocation (scancel), if any."""
    with _lock:
        job_id = _allocation.pop("id", None)
    if job_id:
        subprocess.run(["scancel", job_id], capture_output=True)


def cancel_all() -> None:
    """scancel every SLURM job (or step) this process started, and the allocation."""
    ids = local.running_slurm_jobs()
    with _lock:
        if "id" in _allocation:
            ids.append(_allocation["id"])
    if ids:
        subprocess.run(["scancel", *sorted(set(ids))], capture_output=True)
