"""Run a job as a local process: stream its output, account its cost, kill it cleanly.

Each job runs in its own process group so that cancelling stops WSClean and anything
it started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

from imgpipe.execution.job_script import wrapped_argv
from imgpipe.plan import Job
from imgpipe.results import CANCELLED, FAILED, OK, JobResult, describe_exit

_running: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()
_cancelled = threading.Event()


def run_local(job: Job, env_file: str | None, on_line: Callable[[str], None] = lambda line: None) -> JobResult:
    """Run ``job`` here; its output goes line by line to ``<out_dir>/<name>.log`` and ``on_line``."""
    if _cancelled.is_set():
        return JobResult(job, CANCELLED, "run cancelled before the job started")
    try:
        os.makedirs(job.out_dir, exist_ok=True)
        log = open(job.log_path, "w", encoding="utf-8", errors="replace", buffering=1)
    except OSError as err:
        return JobResult(job, FAILED, f"cannot create {job.out_dir}: {err.strerror}")
    with log:
        started = time.time()
        try:
            proc = subprocess.Popen(
                wrapped_argv(job.argv, job.out_dir, env_file),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
                errors="replace",
            )
        except OSError as err:
            return JobResult(job, FAILED, f"cannot start: {err.strerror}")
        with _lock:
            _running[proc.pid] = proc
        try:
            for line in proc.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            with _lock:
                _running.pop(proc.pid, None)
        ended = time.time()
    rc = proc.returncode
    if rc == 0:
        status_, reason = OK, ""
    elif _cancelled.is_set():
        status_, reason = CANCELLED, f"cancelled ({describe_exit(rc)})"
    else:
        status_, reason = FAILED, describe_exit(rc)
    return JobResult(
        job,
        status_,
        reason,
        exit_code=rc,
        started_at=started,
        ended_at=ended,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,
    )


def cancel_all(grace_s: float = 10.0) -> int:
    """Stop every running local job: SIGTERM to its process group, SIGKILL after ``grace_s``.

    Returns the number of jobs that were running. Jobs not yet started will not start.
    """
    _cancelled.set()
    with _lock:
        procs = list(_running.values())
    for proc in procs:
        _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with _lock:
            if not _running:
                break
        time.sleep(0.05)
    with _lock:
        left = list(_running.values())
    for proc in left:
        _signal_group(proc.pid, signal.SIGKILL)
    return len(procs)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reset() -> None:
    """Forget an earlier cancellation (a new run in the same process)."""
    _cancelled.clear()
