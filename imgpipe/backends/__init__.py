"""Execution backends: how one job's command runs on its host.

Every backend takes a :class:`~imgpipe.core.plan.Job` (with its host decided), the
env_file and a line callback, and returns a :class:`~imgpipe.core.results.JobResult`; the
orchestration layer does not care where. ``localhost`` runs a local process
(``local``), any other host runs over SSH (``ssh``, imported only when needed: it
loads paramiko).
"""

from __future__ import annotations

import sys
from typing import Callable

from imgpipe.backends.running import CANCEL_GRACE_S
from imgpipe.core.nodes import SLURM, is_local, is_ssh

__all__ = ["CANCEL_GRACE_S", "cancel_all", "close_nodes", "reach_nodes", "reset", "run_job"]


def run_job(job, worker, on_line: Callable[[str], None] = lambda line: None, stop=None):
    """Run ``job`` on ``job.host`` (local, SSH or SLURM) as ``worker`` says; returns its JobResult.

    ``stop`` (a threading.Event, local jobs only): set it to stop this job alone.
    """
    if job.host == SLURM:
        from imgpipe.backends.slurm import run_slurm

        return run_slurm(job, worker, on_line)
    if is_local(job.host):
        from imgpipe.backends.local import run_local

        return run_local(job, worker.env_file, on_line, worker.kill_grace, worker.max_time, stop=stop)
    from imgpipe.backends.ssh import run_ssh

    return run_ssh(job, worker.env_file, on_line, worker.kill_grace, worker.max_time)


def cancel_all(grace_s: float = CANCEL_GRACE_S) -> None:
    """Stop every running job of this process, local and remote, in parallel."""
    import threading

    from imgpipe.backends import local

    slurm = sys.modules.get("imgpipe.backends.slurm")
    if slurm is not None:
        slurm.cancel_all()  # scancel what was submitted, before the srun processes go
    stoppers = [threading.Thread(target=local.cancel_all, args=(grace_s,))]
    ssh = sys.modules.get("imgpipe.backends.ssh")
    if ssh is not None:
        stoppers.append(threading.Thread(target=ssh.cancel_all, args=(grace_s,)))
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()


def close_nodes() -> None:
    """The run's jobs have ended: stop the SSH node agents (no process of the run stays on a node)."""
    ssh = sys.modules.get("imgpipe.backends.ssh")
    if ssh is not None:
        ssh.close_nodes()


def reset() -> None:
    """A new run in the same process: forget an earlier cancellation."""
    from imgpipe.backends import local

    local.reset()
    ssh = sys.modules.get("imgpipe.backends.ssh")
    if ssh is not None:
        ssh.reset()


def reach_nodes(worker, hosts: list[str], on_retry: Callable[[str], None] = lambda message: None) -> dict[str, str]:
    """Connect to the SSH nodes among ``hosts`` (connections kept for the jobs).

    Returns ``{host: why}`` for nodes that stayed unreachable when
    ``skip_unreachable_nodes`` is set; otherwise raises :class:`NodeError` naming them.
    """
    remote = [h for h in hosts if is_ssh(h)]
    if not remote:
        return {}
    from imgpipe.backends import ssh  # paramiko: only for runs that use SSH nodes
    from imgpipe.core.errors import NodeError

    ssh.POOL.configure(ssh.SSHSettings(worker.ssh_config, worker.accept_new_host_keys, worker.node_agent))
    errors = ssh.check_nodes(remote, worker.retries, worker.retry_delay, on_retry)
    if errors and not worker.skip_unreachable_nodes:
        lines = "; ".join(str(e) for e in errors.values())
        raise NodeError(
            f"cannot reach {len(errors)} node(s): {lines} "
            "(set [worker] skip_unreachable_nodes = true to run on the other nodes)"
        )
    return {host: str(err) for host, err in errors.items()}
