"""Execution backends: how one job's command runs on its host, owned by the run.

Each backend (:class:`~imgpipe.backends.base.Backend`: run a job, cancel, close) is
made by the run that uses it, on first use: ``local`` for this machine, ``ssh`` for SSH
nodes (imported only then: it loads paramiko), ``slurm`` for ``nodes = 'slurm'``.
:class:`RunBackends` holds them for one run and releases everything they hold when the
run ends, whatever raised; nothing lives in module globals, so two runs in one process
(tests, a program embedding imgpipe) never share connections or cancellations.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, cast

from imgpipe.backends.base import Backend
from imgpipe.backends.local import LocalBackend
from imgpipe.backends.running import CANCEL_GRACE_S
from imgpipe.backends.slurm import SlurmBackend
from imgpipe.core.errors import NodeError
from imgpipe.core.job_resources import Capacity, place, slurm_capacity
from imgpipe.core.nodes import SLURM, is_local, is_ssh

__all__ = ["CANCEL_GRACE_S", "Backend", "RunBackends"]

log = logging.getLogger(__name__)

LOCAL, SSH = "local", "ssh"


class RunBackends:
    """The backends of one run. Use it as a context manager: on exit every backend made is
    closed (SSH connections and node agents, the SLURM allocation), each even if another's
    close raised."""

    def __init__(self, worker):
        self.worker = worker
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self.stopped_by: str | None = None
        """What stopped the run (see :meth:`cancel_all`), once it was."""

    def __enter__(self) -> "RunBackends":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        # what Prefect records if this is handed to the flow as a parameter
        yield "backends", sorted(self._made)

    def __reduce__(self):
        # Sent to another process (prefect-dask pickles the flow run's context, parameters
        # included, for each Dask task): a copy there holds nothing of this run's
        # connections or jobs, and nothing there uses it (a Dask job runs as a local process).
        return (RunBackends, (self.worker,))

    def _get(self, kind: str) -> Backend:
        with self._lock:
            if kind not in self._made:
                if kind == SSH:
                    from imgpipe.backends.ssh import SSHBackend  # paramiko: only for runs with SSH nodes

                    self._made[kind] = SSHBackend(self.worker)
                elif kind == SLURM:
                    self._made[kind] = SlurmBackend(self.worker)
                else:
                    self._made[kind] = LocalBackend(self.worker)
            return self._made[kind]

    @property
    def local(self) -> LocalBackend:
        """The run's backend for this machine."""
        return cast(LocalBackend, self._get(LOCAL))

    @property
    def ssh(self):
        """The run's SSH backend (its connections and node agents)."""
        return self._get(SSH)

    @property
    def slurm(self):
        """The run's SLURM backend (its allocation)."""
        return self._get(SLURM)

    def for_host(self, host: str) -> Backend:
        if host == SLURM:
            return self._get(SLURM)
        return self._get(LOCAL if is_local(host) else SSH)

    def capacity(self, host: str) -> Capacity | None:
        """``host``'s cores and memory if known without waiting: this machine's; an SSH node's
        once the run reached it (its agent said, or one session read it); for SLURM, what
        ``slurm_options`` asks of each step, else a node of the run's allocation once granted."""
        if host == SLURM:
            return self.slurm.capacity() if SLURM in self._made else slurm_capacity(self.worker.slurm_options)
        if is_local(host):
            return self.local.capacity
        return self.ssh.known_capacity(host) if is_ssh(host) else None

    def place(self, job):
        """``job`` with the cores and memory it gets on ``job.host`` (see ``core.job_resources``)."""
        if job.ask is None or job.given is not None or job.host is None:
            return job
        if job.host == SLURM:
            return self.slurm.place(job)
        return place(job, self.capacity(job.host))

    def run_job(self, job, on_line: Callable[[str], None] = lambda line: None, stop=None):
        """Run ``job`` on ``job.host`` (local, SSH or SLURM); returns its JobResult.

        ``stop`` (a threading.Event, local jobs): set it to stop this job alone.
        """
        return self.for_host(job.host).run(job, on_line, stop)

    def reach_nodes(self, hosts: list[str], on_retry: Callable[[str], None] = lambda message: None,
                    quick: bool = False) -> dict[str, str]:
        """Connect to the SSH nodes among ``hosts`` now (connections kept for the jobs).

        Returns ``{host: why}`` for nodes that stayed unreachable when
        ``skip_unreachable_nodes`` is set; otherwise raises :class:`NodeError` naming them.
        ``quick``: one retry after 1 s at most (a person at a terminal is told in seconds);
        otherwise ``[worker] retries`` after ``retry_delay`` each (a nightly run, whose node
        may be back a minute later).
        """
        remote = [h for h in hosts if is_ssh(h)]
        if not remote:
            return {}

        retries, delay = (min(self.worker.retries, 1), min(self.worker.retry_delay, 1.0)) if quick else (None, None)
        errors = self.ssh.reach(remote, on_retry, retries, delay)
        if errors and not self.worker.skip_unreachable_nodes:
            lines = "; ".join(str(e) for e in errors.values())
            raise NodeError(
                f"cannot reach {len(errors)} node(s): {lines} "
                "(set [worker] skip_unreachable_nodes = true to run on the other nodes)"
            )
        return {host: str(err) for host, err in errors.items()}

    def cancel_all(self, who: str | None = None, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop every running job of the run, local and remote, in parallel (SLURM's are
        scancelled first, before their srun processes go). ``who``: what stopped the run
        (Ctrl-C, a cancel in Prefect), for the jobs' reasons."""
        if who and not self.stopped_by:
            self.stopped_by = who
        with self._lock:
            made = dict(self._made)
        if SLURM in made:
            made.pop(SLURM).cancel(grace_s)
        stoppers = [threading.Thread(target=b.cancel, args=(grace_s,)) for b in made.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()

    def close(self) -> None:
        """Release what every backend holds; an error in one is logged and the others still close."""
        with self._lock:
            made, self._made = list(self._made.items()), {}
        for kind, backend in made:
            try:
                backend.close()
            except Exception as err:
                log.warning("closing the %s backend: %s: %s", kind, type(err).__name__, err)
