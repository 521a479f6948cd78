"""Run a job as a local process: stream its output, account its cost, stop it cleanly.

The job runs under the same bash wrapper as on SSH nodes (see ``job_script``): its
own session, a log beside its images, and a watcher that stops it (SIGTERM, SIGKILL
after a grace period) when imgpipe closes the wrapper's stdin or dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

from imgpipe.execution.job_script import OutputParser, new_token, outcome, wrapped_argv
from imgpipe.plan import Job
from imgpipe.results import CANCELLED, FAILED, JobResult

_running: dict[int, tuple[subprocess.Popen, OutputParser]] = {}
_lock = threading.Lock()
_cancelled = threading.Event()


def run_local(
    job: Job,
    env_file: str | None,
    on_line: Callable[[str], None] = lambda line: None,
    grace_s: float = 10.0,
) -> JobResult:
    """Run ``job`` here; its output goes to ``<out_dir>/<name>.log`` and, line by line, to ``on_line``."""
    if _cancelled.is_set():
        return JobResult(job, CANCELLED, "run cancelled before the job started")
    token = new_token()
    parser = OutputParser(token)
    try:
        proc = subprocess.Popen(
            wrapped_argv(job.argv, job.out_dir, job.log_path, env_file, token, grace_s),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
    except OSError as err:
        return JobResult(job, FAILED, f"cannot start bash: {err.strerror}")
    with _lock:
        _running[proc.pid] = (proc, parser)
    started = last = None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if parser.feed(line):
                if started is None and parser.state.pid is not None:
                    started = time.time()
            else:
                last = line
                on_line(line)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        with _lock:
            _running.pop(proc.pid, None)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
    ended = time.time()
    status_, code, reason = outcome(parser.state, last or "")
    if status_ != "ok" and _cancelled.is_set():
        status_, reason = CANCELLED, f"cancelled ({reason})"
    return JobResult(
        job,
        status_,
        reason,
        exit_code=code,
        started_at=started,
        ended_at=ended if started is not None else None,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,
        pid=parser.state.pid,
    )


def cancel_all(grace_s: float = 10.0) -> int:
    """Stop every running local job: SIGTERM to its process group, SIGKILL after ``grace_s``.

    Returns the number of jobs that were running. Jobs not yet started will not start.
    """
    _cancelled.set()
    with _lock:
        running = list(_running.values())
    for proc, _ in running:
        try:  # the wrapper's watcher does the rest, on the node's own clock
            proc.stdin.write(f"stop {grace_s:g}\n")
            proc.stdin.close()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + grace_s + 2
    while time.monotonic() < deadline:
        with _lock:
            if not _running:
                break
        time.sleep(0.05)
    with _lock:
        left = list(_running.values())
    for proc, parser in left:  # the wrapper itself is stuck: kill both groups
        for pid in (parser.state.pid, proc.pid):
            if pid:
                _signal_group(pid, signal.SIGKILL)
    return len(running)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reset() -> None:
    """Forget an earlier cancellation (a new run in the same process)."""
    _cancelled.clear()
