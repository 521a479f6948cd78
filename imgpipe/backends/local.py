"""Run a job as a local process: stream its output, account its cost, stop it cleanly.

The job runs under the same bash wrapper as on SSH nodes (see ``job_script``): its
own session, a log beside its images, and a watcher that stops it (SIGTERM, SIGKILL
after a grace period) when imgpipe closes the wrapper's stdin or dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from imgpipe.backends.job_script import OutputParser, as_cancelled, new_token, outcome, wrapped_argv
from imgpipe.backends.running import CANCEL_GRACE_S, RunningJobs
from imgpipe.core.job_resources import Capacity, place
from imgpipe.core.plan import Job
from imgpipe.core.results import CANCELLED, FAILED, JobResult
from imgpipe.core.results import describe_exit as reason_of
from imgpipe.facts.node_capacity import local_capacity


class LocalBackend:
    """Jobs as processes of this machine, for one run: started, stopped together, accounted."""

    def __init__(self, worker):
        self.worker = worker
        self.running = RunningJobs()  # pid → (Popen, OutputParser)
        self._capacity: Capacity | None = None

    @property
    def capacity(self) -> Capacity:
        """This machine's cores and memory, read once per run (see ``facts.node_capacity``)."""
        if self._capacity is None:
            self._capacity = local_capacity()
        return self._capacity

    def run(self, job: Job, on_line: Callable[[str], None] = lambda line: None,
            stop: threading.Event | None = None) -> JobResult:
        w = self.worker
        job = place(job, self.capacity)
        return run_local(job, w.env_file, on_line, w.kill_grace, w.max_time, stop=stop, running=self.running,
                         min_free_mb=w.temp_min_free)

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> int:
        return cancel_all(self.running, grace_s)

    def close(self) -> None:
        """Nothing is held between jobs: each job's process ends with it."""


def run_local(
    job: Job,
    env_file: str | None,
    on_line: Callable[[str], None] = lambda line: None,
    grace_s: float = 30.0,
    max_time_s: int | None = None,
    launcher: tuple[str, ...] = (),
    stop: threading.Event | None = None,
    running: RunningJobs | None = None,
    min_free_mb: int = 0,
) -> JobResult:
    """Run ``job`` here; its output goes to ``<out_dir>/<name>.log`` and, line by line, to ``on_line``.

    ``launcher`` runs the wrapper through another command (``srun ...`` for SLURM);
    setting ``stop`` stops this job alone (SIGTERM, SIGKILL after ``CANCEL_GRACE_S``), as
    a cancelled run does on a Dask worker shared with other runs; ``running``: the run's
    registry of jobs, through which a cancel reaches this one; ``min_free_mb``: least free
    space for the job's scratch folder.
    """
    registry = running if running is not None else RunningJobs()
    if registry.cancelled.is_set():
        return JobResult(job, CANCELLED, "run cancelled before the job started")
    token = new_token()
    parser = OutputParser(token)
    try:
        proc = subprocess.Popen(
            # the job is measured by the accounting launcher, not by wait4 of the wrapper: see
            # _own_peak_kb; through srun, wait4 would measure srun
            [*launcher, *wrapped_argv(job.argv, job.out_dir, job.log_path, env_file, token, grace_s, max_time_s,
                                      rusage_launcher=True, scratch=job.scratch, min_free_mb=min_free_mb,
                                      env=job.env, links=job.ms_links, ms=job.ms,
                                      column=job.data_column)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # the launcher's interpreter: imgpipe's own (a pyenv shim costs 0.1 s a call);
            # behind srun, valid where this path is shared, else the node's python3
            env={**os.environ, "IMGPIPE_PYTHON": sys.executable},
            text=True,
            errors="replace",
        )
        own_peak_kb = _own_peak_kb()
    except OSError as err:
        return JobResult(job, FAILED, f"cannot start {(launcher or ('bash',))[0]}: {err.strerror}")
    registry.add(proc.pid, (proc, parser))
    finished = threading.Event()
    if stop is not None:
        threading.Thread(target=_stop_when_set, args=(stop, finished, proc), daemon=True).start()
    try:
        for raw in proc.stdout or ():
            parser.take(raw.rstrip("\n"), on_line)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        finished.set()
        registry.remove(proc.pid)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
    ended = time.time()
    state, started, last = parser.state, parser.started_at, parser.last_words
    status_, code, reason = outcome(state, last, grace_s)
    if launcher and state.exit_code is None and state.setup_failed is None:
        code = proc.returncode
        reason = f"{launcher[0]} failed ({reason_of(code)}): {last or 'no output'}"
    status_, reason = as_cancelled(status_, reason, registry.cancelled.is_set() or (stop is not None and stop.is_set()))
    # the job's cost from the launcher; when it could not report (killed with the job's
    # group), from wait4 of the wrapper, whose peak is only the job's when above imgpipe's own
    on_node = state.max_rss_mb is not None or bool(launcher)
    wrapper_peak_mb = usage.ru_maxrss / 1024.0 if usage.ru_maxrss > own_peak_kb else None
    return JobResult(
        job,
        status_,
        reason,
        exit_code=code,
        started_at=started,
        ended_at=ended if started is not None else None,
        cpu_s=state.cpu_s if on_node else usage.ru_utime + usage.ru_stime,
        max_rss_mb=state.max_rss_mb if on_node else wrapper_peak_mb,
        pid=state.pid,
        slurm_job=state.slurm_job,
        oom_killed=state.oom_killed,
    )


def _own_peak_kb() -> int:
    """This process's peak resident memory (kB), which a process it starts inherits as its own.

    Linux carries the parent's memory high-water mark into a (v)forked child's peak at its
    exec (``exec_mmap``), so ``wait4`` of the wrapper reports at least imgpipe's own peak
    (~400 MiB with Prefect loaded) for a job that used less. The job's peak therefore comes
    from the launcher, which forks it from a small process.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 62  # unknown: no wrapper figure is trusted


def _stop_when_set(stop: threading.Event, finished: threading.Event, proc: subprocess.Popen) -> None:
    while not finished.is_set():
        if stop.wait(0.5):
            if not finished.is_set():
                try:
                    proc.stdin.write(f"stop {CANCEL_GRACE_S:g}\n")  # type: ignore[union-attr]  # (started with a pipe)
                    proc.stdin.close()  # type: ignore[union-attr]
                except (OSError, ValueError):
                    pass
            return


def running_slurm_jobs(running: RunningJobs) -> list[str]:
    """SLURM job ids of the jobs running now (for scancel)."""
    return [p.state.slurm_job for _, p in running.items() if p.state.slurm_job]


def cancel_all(registry: RunningJobs, grace_s: float = CANCEL_GRACE_S) -> int:
    """Stop every job of ``registry``: SIGTERM to its process group, SIGKILL after ``grace_s``.

    Returns the number of jobs that were running. Jobs not yet started will not start.
    """
    registry.cancelled.set()
    running = registry.items()
    for proc, _ in running:
        try:  # the wrapper's watcher does the rest, on the node's own clock
            proc.stdin.write(f"stop {grace_s:g}\n")
            proc.stdin.close()
        except (OSError, ValueError):
            pass
    for proc, parser in registry.wait_empty(grace_s + 2):  # the wrapper itself is stuck: kill both groups
        for pid in (parser.state.pid, proc.pid):
            if pid:
                _signal_group(pid, signal.SIGKILL)
    return len(running)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

