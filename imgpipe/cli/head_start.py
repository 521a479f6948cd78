"""The head start: a command-line run's first jobs start before its flow run does.

Why: a run's flow begins once Prefect is imported (a second or two) and, with the
embedded server, once that server answers (seconds more: it imports Prefect's web
application, docs/prefect.md). The first jobs waited for it, though WSClean needs
nothing of it. With a head start the jobs that would take the first slots start as soon
as the plan is made; the flow takes each over when it reaches it (its task run, node
slot, output, accounting and record, as for any job).

What stays true:
- The per-node cap across runs. Slots are held in the server's database, out of reach
  until the flow runs; a head start is taken only when no other imgpipe run of that
  database is alive (``run_locks``: the PREFECT_HOME's lock and the loopback server's,
  held exclusively until the early jobs hold their slots there; a run starting
  meanwhile waits for that). So only with this home's own SQLite database, served by the
  run's embedded server, this home's kept server, or a server of this home running on
  its user's command (``PREFECT_API_URL``), which listens on this machine's loopback
  only (a server others can reach, another home's, or another database, could serve
  runs that hold no lock here).
- The jobs the flow would start first, the same way: those not done before and not
  another job's images (provenance), in the dispatcher's order and admission, with
  their MS locks and their "being written" record, before WSClean starts.
- The history: each job is a task run of the flow run, which logs when it really
  started, and WSClean's output is logged from its first line.

Only for runs on this machine (no SSH node, SLURM, Dask or MPI, and not with
``ms_locks = 'server'``, which says runs of other machines share the server). With any other Prefect
server set by ``PREFECT_API_URL`` (a team's, another user's, one in a container) the
jobs start with the flow.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from imgpipe.core.nodes import is_local
from imgpipe.core.scheduling import SlotScheduler
from imgpipe.facts import listening_sockets
from imgpipe.facts.prefect_profile import DATABASE_URL_SETTINGS, configured_setting
from imgpipe.orchestration import run_locks
from imgpipe.orchestration.dispatcher import Dispatcher
from imgpipe.orchestration.embedded_server import prefect_home
from imgpipe.orchestration.kept_server import PID_FILE, server_argv_of, server_environ, server_port
from imgpipe.orchestration.ms_locks import LocalMsLocks, hand_over
from imgpipe.products import provenance


def why_not(config, plan, kept_pid: int | None = None, environ=os.environ, api_url: str | None = None) -> str | None:
    """Why this run may not start jobs before its flow does (None: it may).

    ``kept_pid``: the kept server this run uses (``[prefect] server = 'kept'``);
    ``api_url``: the running server it uses (``PREFECT_API_URL``); neither: the run has
    its own embedded server."""
    if config.prefect.dask or config.nodes_mpi or config.worker.slurm_nodes:
        return "Dask, MPI or SLURM run"
    if not all(is_local(host) for host in plan.hosts()):
        return "a node other than this machine"
    if config.prefect.ms_locks == "server":
        return "MS locks on the Prefect server (runs of other machines use it)"
    if configured_setting(environ, *DATABASE_URL_SETTINGS):
        return "a Prefect database other than PREFECT_HOME's"
    if api_url is not None:
        return _why_not_running(api_url)
    try:
        pid = int((prefect_home() / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and server_port(pid) is None:
        pid = None  # (a stale pid file)
    if kept_pid is None:
        return f"a Prefect server (pid {pid}) runs on this PREFECT_HOME" if pid is not None else None
    if pid != kept_pid:
        return f"the kept Prefect server (pid {kept_pid}) is not this PREFECT_HOME's"
    return _why_not_kept(kept_pid)


def _why_not_kept(pid: int) -> str | None:
    """A kept server that only runs of this machine reach, on this home's database? (It
    may have been started by ``prefect server start --background``, with any options.)
    Its command line names its host (Prefect's background start and imgpipe's pass
    ``--host``): read there, as the run that starts it looks before it listens."""
    argv = server_argv_of(pid)
    host = argv[argv.index("--host") + 1] if "--host" in argv[:-1] else "127.0.0.1"
    if not listening_sockets.is_loopback(host):
        return f"the kept Prefect server (pid {pid}) listens beyond this machine (--host {host})"
    env = server_environ(pid)
    if env is None:
        return f"cannot read the kept Prefect server's environment (pid {pid})"
    if configured_setting(env, *DATABASE_URL_SETTINGS):
        return "the kept Prefect server uses a database other than PREFECT_HOME's"
    return None


def _why_not_running(api_url: str) -> str | None:
    """A running server that only runs of this machine reach, on this home's database?
    Found by its socket: a foreground ``prefect server start`` may take its host from its
    profile (``PREFECT_SERVER_API_HOST``), the socket tells where it listens."""
    port = run_locks.loopback_port(api_url)
    if port is None:
        return "a Prefect server beyond this machine's loopback (PREFECT_API_URL)"
    name = f"the Prefect server on port {port}"
    sockets = listening_sockets.listening(port)
    if not sockets:
        return f"nothing listens on port {port}"
    beyond = [str(addr) for addr, _, _ in sockets if not listening_sockets.is_loopback(addr)]
    if beyond:
        return f"{name} listens beyond this machine (on {beyond[0]})"
    pids = sorted({pid for *_, inode in sockets for pid in listening_sockets.owners(inode)})
    if not pids:
        return f"{name} is not a process of this user"
    env = server_environ(pids[0])
    if env is None:
        return f"cannot read the environment of {name} (pid {pids[0]})"
    if configured_setting(env, *DATABASE_URL_SETTINGS):
        return f"{name} uses a database other than its PREFECT_HOME's"
    home, ours = Path(env.get("PREFECT_HOME") or Path(env.get("HOME") or Path.home()) / ".prefect").expanduser(), prefect_home()
    if not home.is_absolute():
        home = Path(f"/proc/{pids[0]}/cwd") / home  # (relative to where it was started)
    try:
        same = home.resolve() == ours.resolve()
    except OSError:
        same = False
    return None if same else f"{name} serves another PREFECT_HOME ({home}; this run's is {ours})"


def first_picks(plan, worker, capacity, force: bool, may_replace: bool) -> list:
    """The jobs the flow's dispatcher would start first, placed on their node."""
    done = {i for i, job in enumerate(plan.jobs) if provenance.not_to_run(job, force, may_replace) is not None}
    plan = plan.shares_left(done, worker.max_concurrent)  # (as the flow will)
    sizes, needs = Dispatcher.admission(plan, capacity)
    scheduler = SlotScheduler(Dispatcher.start_order(plan, worker), plan.pool, worker.max_concurrent, sizes, needs)
    for i in done:
        scheduler.remove(plan.jobs[i])  # (the flow's resume check records it)
    return [replace(queued.job, host=host) for queued, host in scheduler.take_ready(time.monotonic())]


def start_early(prepared, run_backends, server) -> int:
    """Start the run's first jobs now if this run may (see the module docstring); how many started.

    ``server``: the run's embedded or kept server, started (its ``api_url`` known); None:
    a running server set by ``PREFECT_API_URL``."""
    config, plan, request = prepared.config, prepared.plan, prepared.request
    if server is None:
        api_url = os.environ["PREFECT_API_URL"]
        why = why_not(config, plan, api_url=api_url)
    else:
        api_url = server.api_url
        why = why_not(config, plan, server.pid if config.prefect.server == "kept" else None)
    if why is not None:
        return 0
    if not run_locks.try_exclusive(run_locks.lock_paths(api_url)):
        return 0  # another run of this home or server is alive
    local = run_backends.local
    local.on_all_taken_over = run_locks.share_now
    ms_locks, started = LocalMsLocks(), 0
    for job in first_picks(plan, config.worker, run_backends.capacity, request.force, request.replace):
        job = run_backends.place(job)
        fds = ms_locks.try_lock(job, "starting")
        if fds is None:
            continue  # another run (of another PREFECT_HOME) images that MS: the flow will wait for it
        try:
            os.makedirs(job.out_dir, exist_ok=True)
            provenance.mark_starting(provenance.record_path(job.out_dir, job.name), job, None)
        except OSError:
            ms_locks.release(fds)
            continue  # the flow's task says why, as for any job
        hand_over(job, fds)
        local.start_early(job)
        started += 1
    if not started:
        run_locks.share_now()
    return started
