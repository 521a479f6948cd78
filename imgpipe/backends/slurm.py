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

import logging
import math
import re
import subprocess
import threading
from typing import Callable

from imgpipe.backends import local
from imgpipe.backends.running import CANCEL_GRACE_S, RunningJobs
from imgpipe.core.errors import ImgpipeError
from imgpipe.core.job_resources import Capacity, place, slurm_capacity, slurm_items
from imgpipe.core.plan import Job
from imgpipe.core.results import JobResult

log = logging.getLogger(__name__)


def time_limit(worker) -> list[str]:
    """``--time=<minutes>`` for max_time (plus the kill grace), or nothing."""
    if worker.max_time is None:
        return []
    return [f"--time={math.ceil((worker.max_time + worker.kill_grace) / 60)}"]


def srun_argv(job: Job, worker, allocation: str | None = None) -> list[str]:
    """The ``srun`` command that runs one job (the wrapper's argv follows it): with the
    cores and memory the job was given, unless ``slurm_options`` sets them."""
    argv = ["srun", f"--job-name=imgpipe:{job.name}", "--ntasks=1", "--nodes=1", *time_limit(worker)]
    if allocation:
        argv += [f"--jobid={allocation}", "--exact"]
    return [*argv, *slurm_items(job.given, worker.slurm_options), *worker.slurm_options]


class SlurmBackend:
    """Jobs through SLURM for one run: srun per job, in the run's allocation if it has one.

    Owns that allocation: ``close()`` gives it back (scancel), and ``cancel()`` scancels
    the jobs submitted and the allocation, even one still waiting in the queue.
    """

    def __init__(self, worker):
        self.worker = worker
        self.running = RunningJobs()  # the srun processes, here
        self.allocation: str | None = None
        """The SLURM job id of the run's allocation (known from salloc's first line)."""
        self.allocation_size: tuple[Capacity, int] | None = None
        """Each node's cores and memory in that allocation, and its number of nodes (see
        :func:`allocation_size`); None: no allocation, or SLURM did not say."""
        self._lock = threading.Lock()

    def capacity(self) -> Capacity | None:
        """What one job may share: what ``slurm_options`` asks of each step when it says
        both cores and memory, else a node of the run's allocation (when it has one)."""
        size = slurm_capacity(self.worker.slurm_options)
        if size is None and self.allocation_size is not None:
            return self.allocation_size[0]
        return size

    def place(self, job: Job) -> Job:
        """``job`` with its cores and memory (see ``core.job_resources``)."""
        size = slurm_capacity(self.worker.slurm_options)
        if size is not None:  # each srun step is an allocation of its own: all slurm_options ask for
            return place(job, size, 1)
        if self.allocation_size is not None and job.ask is not None:
            # a step of the run's allocation: a share of one of its nodes, the jobs spread over them
            node, nodes = self.allocation_size
            return place(job, node, math.ceil(job.ask.slots / nodes))
        return job

    def run(self, job: Job, on_line: Callable[[str], None] = lambda line: None, stop=None) -> JobResult:
        """Run ``job`` with srun (in the run's allocation if there is one)."""
        w = self.worker
        job = self.place(job)
        launcher = srun_argv(job, w, self.allocation)
        return local.run_local(job, w.env_file, on_line, w.kill_grace, w.max_time, tuple(launcher), stop=stop,
                               running=self.running, min_free_mb=w.temp_min_free)

    def allocate(self, on_line: Callable[[str], None] = lambda line: None) -> str:
        """``salloc --no-shell`` of ``slurm_nodes`` nodes for this run; returns the SLURM job id.

        The job id is remembered as soon as salloc prints it, while the request still waits
        in the queue, so that an interrupted run cancels (``release``) even a pending
        allocation, which would otherwise start later and hold its nodes for nothing.
        """
        w = self.worker
        argv = ["salloc", "--no-shell", f"--nodes={w.slurm_nodes}", "--job-name=imgpipe", *w.slurm_options]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        except OSError as err:
            raise ImgpipeError(f"cannot run salloc: {err.strerror} (is SLURM installed here?)") from None
        lines, granted = [], None
        try:
            for line in proc.stdout or ():
                line = line.rstrip("\n")
                lines.append(line)
                on_line(line)
                if m := re.search(r"(Pending|Granted) job allocation (\d+)", line):
                    with self._lock:
                        self.allocation = m.group(2)
                    granted = m.group(2) if m.group(1) == "Granted" else granted
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if rc != 0 or granted is None:
            self.release()
            last = next((line for line in reversed(lines) if line.strip()), "no output")
            raise ImgpipeError(f"salloc failed (exit {rc}): {last}")
        self.allocation_size = allocation_size(granted)
        return granted

    def release(self) -> bool:
        """End the run's allocation (scancel), if any; False when it may still be held (logged)."""
        with self._lock:
            job_id, self.allocation = self.allocation, None
        return _scancel([job_id], "SLURM allocation") if job_id else True

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """scancel every SLURM job (or step) this run started, and its allocation; then stop
        the srun processes here."""
        ids = local.running_slurm_jobs(self.running)
        with self._lock:
            if self.allocation:
                ids.append(self.allocation)
        if ids:
            _scancel(sorted(set(ids)), "SLURM jobs")
        local.cancel_all(self.running, grace_s)

    def close(self) -> None:
        self.release()


SCANCEL_TIMEOUT_S = 30.0
SCONTROL_TIMEOUT_S = 30.0


def allocation_size(job_id: str) -> tuple[Capacity, int] | None:
    """A node of allocation ``job_id`` (cores, memory) and its number of nodes, as
    ``scontrol show job`` and ``scontrol show node`` say; None when SLURM does not say
    (logged: the jobs then get no share, only what slurm_options asks)."""
    job = _scontrol(["show", "job", "-o", job_id])
    nodes_text = _scontrol(["show", "node", "-o", _field(job, "NodeList") or ""]) if job else None
    size = parse_allocation(job or "", nodes_text or "")
    if size is None:
        log.warning("SLURM allocation %s: cannot tell its cores and memory per node (scontrol show job said: %s): "
                    "its jobs get only what slurm_options asks", job_id, (job or "nothing").strip()[:200])
    return size


def parse_allocation(job: str, nodes: str) -> tuple[Capacity, int] | None:
    """(a node's share of the allocation, number of nodes) from ``scontrol show job -o``
    and ``scontrol show node -o`` of its nodes. Memory: what the allocation asked per node
    (``MinMemoryNode``, or ``MinMemoryCPU`` × its CPUs), else (no memory asked: the job
    may use the node's) the smallest ``RealMemory`` of its nodes; a node's RealMemory of
    a few MB is an unconfigured node: memory unknown."""
    try:
        n_nodes, n_cpus = int(_field(job, "NumNodes") or ""), int(_field(job, "NumCPUs") or "")
    except ValueError:
        return None
    if n_nodes < 1 or n_cpus < 1:
        return None
    cores = max(1, n_cpus // n_nodes)
    mem_mb = _slurm_mb(_field(job, "MinMemoryNode"))
    if not mem_mb and (per_cpu := _slurm_mb(_field(job, "MinMemoryCPU"))):
        mem_mb = per_cpu * cores
    if not mem_mb:
        real = [int(m) for m in re.findall(r"\bRealMemory=(\d+)", nodes)]
        mem_mb = min(real) if real and min(real) >= MIN_REAL_MEMORY_MB else 0
    return Capacity(cores, mem_mb, "SLURM allocation"), n_nodes


MIN_REAL_MEMORY_MB = 256
"""Below this a node's RealMemory is SLURM's default (1 MB: not configured), not a size."""


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(name)}=(\S+)", text)
    return m.group(1) if m else None


def _slurm_mb(value: str | None) -> int:
    """``2000M``, ``4G``, ``0`` → MiB (SLURM's units: M = MiB); 0 when absent or none."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value or "")
    if not m:
        return 0
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)]
    return int(float(m.group(1)) * factor)


def _scontrol(args: list[str]) -> str | None:
    try:
        res = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=SCONTROL_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout if res.returncode == 0 else None


def _scancel(ids: list[str], what: str) -> bool:
    """``scancel ids``; a failure is logged (naming what stays behind), never raised: this
    runs while a run ends or is interrupted, and must not hide why it did."""
    try:
        res = subprocess.run(["scancel", *ids], capture_output=True, text=True, timeout=SCANCEL_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        why = f"cannot run scancel: {err.strerror}" if isinstance(err, OSError) else f"scancel gave no answer in {SCANCEL_TIMEOUT_S:g} s"
    else:
        if res.returncode == 0:
            return True
        said = next((line for line in reversed((res.stderr + res.stdout).splitlines()) if line.strip()), "no output")
        why = f"scancel exited with {res.returncode}: {said}"
    log.warning("could not cancel %s %s: %s (check with squeue; scancel it by hand)", what, " ".join(ids), why)
    return False
