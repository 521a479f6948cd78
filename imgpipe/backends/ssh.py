"""Run a job on an SSH node (paramiko): one connection per node, one channel per job.

- Host names go through ``~/.ssh/config`` and ``[worker] ssh_config`` (HostName, Port,
  User, IdentityFile, UserKnownHostsFile, ConnectTimeout, ProxyCommand), so the names
  in ``[worker] nodes`` are the ones ``ssh`` knows.
- Host keys are checked against known_hosts: an unknown key is refused unless
  ``accept_new_host_keys`` (then it is appended to known_hosts); a changed key is
  always refused.
- A connection carries several jobs (channels), at most ``CHANNELS_PER_CONNECTION``
  (below OpenSSH's default ``MaxSessions 10``); more jobs open another connection.
- Jobs start through the node agent (``agent_script``): one SSH session per node for
  the run, not one per job, so the login shell and ``~/.bashrc`` run once per node.
  A node without python3 (or ``node_agent = false``) gets one session per job.
- Either way the job runs under the wrapper of ``job_script``, whose stdin stays open
  for the life of the job, so a cancel (``stop``), a lost connection or a dead imgpipe
  all stop WSClean on the node.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import paramiko

from imgpipe.backends.agent_script import AGENT, CAPACITY_FALLBACK, CAPACITY_SCRIPT
from imgpipe.backends.job_script import OutputParser, new_token, outcome, wrapped_argv
from imgpipe.backends.node_agent import EXITED, LOST, NOT_STARTED, OUTPUT, AgentLost, NodeAgent
from imgpipe.backends.running import RunningJobs
from imgpipe.core.job_resources import Capacity, place
from imgpipe.core.plan import Job
from imgpipe.core.results import CANCELLED, FAILED, JobResult
from imgpipe.facts.node_capacity import capacity_from_words

CHANNELS_PER_CONNECTION = 8
DEFAULT_CONNECT_TIMEOUT = 10.0
AGENT_START_TIMEOUT_S = 30.0
"""Time for a node's login shell (its ~/.bashrc) and python3 to start the node agent."""
AGENT_PYTHON = "python3"
"""The node agent's interpreter, looked up in the node's login PATH."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSHSettings:
    """How to reach the nodes (from ``[worker]``)."""

    ssh_config: str | None = None
    """Extra ssh_config file, read before ``~/.ssh/config`` (its values win)."""
    accept_new_host_keys: bool = False
    """Accept (and remember) the key of a node not yet in known_hosts."""
    node_agent: bool = True
    """Start jobs through one agent process per node (else one SSH session per job)."""


class NodeUnreachable(Exception):
    """A node could not be reached; ``transient`` errors are worth a retry."""

    def __init__(self, host: str, message: str, transient: bool = True):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.transient = transient


def fingerprint(key: paramiko.PKey) -> str:
    """``ED25519 SHA256:...``, as ``ssh`` and ``ssh-keygen -lf`` show a host key."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    kind = key.get_name().removeprefix("ssh-").removeprefix("ecdsa-sha2-").upper()
    return f"{'ECDSA' if key.get_name().startswith('ecdsa') else kind} SHA256:{digest}"


def known_hosts_name(hostname: str, port: int) -> str:
    """How known_hosts names a host: ``host``, or ``[host]:port`` off port 22."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


class UnknownHostKey(paramiko.SSHException):
    """The node offered a key that no known_hosts file has."""

    def __init__(self, key: paramiko.PKey):
        super().__init__("host key not in known_hosts")
        self.key = key


class _RejectUnknownKeys(paramiko.MissingHostKeyPolicy):
    """OpenSSH's ``StrictHostKeyChecking yes``, keeping the offered key for the message."""

    def missing_host_key(self, client, hostname, key):
        raise UnknownHostKey(key)


class _AcceptNewKeys(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH's ``StrictHostKeyChecking accept-new``: remember unknown keys (changed keys are refused by paramiko itself)."""

    def __init__(self, known_hosts: Path, lock: threading.Lock, host: str):
        self._path = known_hosts
        self._lock = lock
        self._host = host

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        entry = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with self._lock:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self._path, "a") as f:
                f.write(entry)
        log.warning("%s: accepted the new host key of %s (%s) and remembered it in %s (accept_new_host_keys = true)",
                    self._host, hostname, fingerprint(key), self._path)


@dataclass
class _Connection:
    client: paramiko.SSHClient
    channels: int = 0

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()


def _known_hosts_files(options: dict) -> list[Path]:
    files = options.get("userknownhostsfile")
    if files:
        return [Path(os.path.expanduser(f)) for f in files.split()]
    return [Path("~/.ssh/known_hosts").expanduser()]


def _describe(host: str, address: str, err: Exception, known: list[Path] | None = None,
              ssh_config: str | None = None, known_name: str | None = None) -> NodeUnreachable:
    """One clear line for each way a connection fails; host keys in OpenSSH's terms."""
    files = " ".join(str(p) for p in known or []) or "~/.ssh/known_hosts"
    ssh = f"ssh -F {shlex.quote(ssh_config)} {host}" if ssh_config else f"ssh {host}"
    name = known_name or address
    if isinstance(err, paramiko.BadHostKeyException):
        return NodeUnreachable(
            host,
            f"the host key of {name} has CHANGED: known_hosts ({files}) has {fingerprint(err.expected_key)}, the node "
            f"offers {fingerprint(err.key)}; refusing to connect. If the node was reinstalled, remove the old key with "
            f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str((known or [Path('~/.ssh/known_hosts')])[0]))}, "
            f"then check and accept the new one with {ssh}",
            transient=False,
        )
    if isinstance(err, UnknownHostKey):
        return NodeUnreachable(
            host,
            f"the host key of {name} is unknown ({fingerprint(err.key)}, in none of {files}): check it and accept it "
            f"once with {ssh}, or set [worker] accept_new_host_keys = true",
            transient=False,
        )
    if isinstance(err, paramiko.AuthenticationException):
        return NodeUnreachable(host, f"authentication failed at {address}: {err} (check User and IdentityFile in your ssh config)", transient=False)
    if isinstance(err, socket.gaierror):
        return NodeUnreachable(host, f"host name {address.rsplit(':', 1)[0]} does not resolve ({err.strerror})", transient=False)
    if isinstance(err, (socket.timeout, TimeoutError)):
        return NodeUnreachable(host, f"no answer from {address} (timed out)")
    if isinstance(err, ConnectionRefusedError) or "Unable to connect" in str(err):
        return NodeUnreachable(host, f"connection refused at {address} (is sshd running there?)")
    return NodeUnreachable(host, f"cannot connect to {address}: {err or type(err).__name__}")


class SSHPool:
    """Open SSH connections, per node, shared by the jobs of a run."""

    def __init__(self, settings: SSHSettings | None = None):
        self.settings = settings or SSHSettings()
        self._conns: dict[str, list[_Connection]] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._known_hosts_lock = threading.Lock()
        self._agents: dict[str, tuple[NodeAgent, _Connection, paramiko.Channel] | None] = {}
        self._agent_locks: dict[str, threading.Lock] = {}
        """Each node's agent with its connection and channel; None: that node cannot run one."""
        self._measured: dict[str, Capacity | None] = {}
        """The size of nodes without an agent, read once by :meth:`measure`."""

    def _ssh_config(self) -> paramiko.SSHConfig:
        config = paramiko.SSHConfig()
        files = [self.settings.ssh_config, "~/.ssh/config"]
        for name in files:
            path = Path(os.path.expanduser(name)) if name else None
            if path is not None and path.is_file():
                with open(path) as f:
                    config.parse(f)
        return config

    def options(self, host: str) -> dict:
        """What the ssh config says about ``host`` (HostName, Port, User, ...)."""
        return dict(self._ssh_config().lookup(host))

    def _connect(self, host: str) -> paramiko.SSHClient:
        opts = self.options(host)
        hostname, port = opts.get("hostname", host), int(opts.get("port", 22))
        address = f"{hostname}:{port}"
        if "proxyjump" in opts:
            raise NodeUnreachable(host, "ProxyJump is not supported; use ProxyCommand ssh -W %h:%p <jump host>", transient=False)
        timeout = float(opts.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT))
        client = paramiko.SSHClient()
        known = _known_hosts_files(opts)
        for path in known:
            if path.is_file():
                client.load_host_keys(str(path))
        client.set_missing_host_key_policy(
            _AcceptNewKeys(known[0], self._known_hosts_lock, host) if self.settings.accept_new_host_keys else _RejectUnknownKeys()
        )
        try:
            if "proxycommand" in opts:
                sock = paramiko.ProxyCommand(opts["proxycommand"])
            else:
                sock = socket.create_connection((hostname, port), timeout=timeout)
                _keepalive(sock)
            keys = [os.path.expanduser(k) for k in opts.get("identityfile", [])]
            client.connect(
                hostname,
                port=port,
                username=opts.get("user"),
                key_filename=[k for k in keys if os.path.exists(k)] or None,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                sock=sock,
            )
        except NodeUnreachable:
            client.close()
            raise
        except (OSError, EOFError, paramiko.SSHException) as err:
            client.close()
            raise _describe(host, address, err, known, self.settings.ssh_config, known_hosts_name(hostname, port)) from None
        client.get_transport().set_keepalive(30)
        return client

    def _host_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(host, threading.Lock())

    def _agent_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._agent_locks.setdefault(host, threading.Lock())

    def _take(self, host: str) -> _Connection:
        """A live connection to ``host`` with a free channel (connecting if needed)."""
        with self._host_lock(host):
            conns = self._conns.setdefault(host, [])
            for conn in [c for c in conns if not c.alive]:
                conns.remove(conn)
                conn.client.close()
            for conn in conns:
                if conn.channels < CHANNELS_PER_CONNECTION:
                    break
            else:
                conn = _Connection(self._connect(host))
                conns.append(conn)
            conn.channels += 1
            return conn

    def _give_back(self, host: str, conn: _Connection) -> None:
        with self._host_lock(host):
            conn.channels -= 1

    def check(self, host: str) -> None:
        """Connect to ``host`` now (kept open for its jobs); raises :class:`NodeUnreachable`."""
        self._give_back(host, self._take(host))

    def open_channel(self, host: str) -> tuple[_Connection, paramiko.Channel]:
        conn = self._take(host)
        try:
            return conn, conn.client.get_transport().open_session(timeout=DEFAULT_CONNECT_TIMEOUT)
        except (OSError, EOFError, paramiko.SSHException) as err:
            self._give_back(host, conn)
            raise NodeUnreachable(host, f"cannot open a channel: {err or type(err).__name__}") from None

    def close_channel(self, host: str, conn: _Connection, chan: paramiko.Channel) -> None:
        """Close a channel from :meth:`open_channel` and free its place on the connection."""
        chan.close()
        self._give_back(host, conn)

    def agent(self, host: str) -> NodeAgent | None:
        """The node agent on ``host``, started if needed; None where jobs get a session each.

        Raises :class:`NodeUnreachable` when the node cannot be reached.
        """
        if not self.settings.node_agent:
            return None
        with self._agent_lock(host):
            entry = self._agents.get(host, ())
            if entry is None:
                return None
            if entry:
                agent, conn, chan = entry
                if agent.lost is None:
                    return agent
                self.close_channel(host, conn, chan)  # its connection dropped: start another
            self._agents[host] = entry = self._start_agent(host)
            return entry[0] if entry else None

    def _start_agent(self, host: str) -> tuple[NodeAgent, _Connection, paramiko.Channel] | None:
        conn, chan = self.open_channel(host)
        try:
            chan.exec_command(f"exec {shlex.quote(AGENT_PYTHON)} -I -S -c {shlex.quote(AGENT)} 2>&1")
        except (OSError, EOFError, paramiko.SSHException) as err:
            self.close_channel(host, conn, chan)
            raise NodeUnreachable(host, f"cannot start the node agent: {err or type(err).__name__}") from None
        agent = NodeAgent(chan.makefile("rb"), chan.sendall, chan.shutdown_write, host, abort=chan.close)
        if agent.wait_ready(AGENT_START_TIMEOUT_S):
            return agent, conn, chan
        self.close_channel(host, conn, chan)
        if not conn.alive:
            raise NodeUnreachable(host, "connection lost while starting the node agent")
        why = agent.chatter or agent.lost or f"no answer in {AGENT_START_TIMEOUT_S:g} s"
        log.warning("%s: no node agent (%s): one SSH session per job there", host, why)
        return None

    def known_capacity(self, host: str) -> Capacity | None:
        """What the agent running on ``host`` said of its cores and memory, or what
        :meth:`measure` read on a node without one; None: not known (yet)."""
        entry = self._agents.get(host)
        return entry[0].capacity if entry else self._measured.get(host)

    def measure(self, host: str) -> Capacity | None:
        """Read the cores and memory of ``host``, a node without agent, in one SSH session
        (``scripts/node_capacity_fallback.sh``); None when it could not tell (logged)."""
        if host in self._measured:
            return self._measured[host]
        argv = ["bash", "-c", CAPACITY_FALLBACK, "imgpipe-capacity", CAPACITY_SCRIPT]
        words, why = None, "no answer"
        try:
            conn, chan = self.open_channel(host)
        except NodeUnreachable:
            return None  # not remembered: the job that asked fails on the connection, a retry asks again
        else:
            try:
                chan.settimeout(AGENT_START_TIMEOUT_S)
                chan.exec_command(shlex.join(argv))
                lines = chan.makefile("rb").read().decode("utf-8", "replace").splitlines()
                words = lines[-1].split() if lines else None
            except (OSError, EOFError, paramiko.SSHException) as err:
                why = f"{err or type(err).__name__}"
            finally:
                self.close_channel(host, conn, chan)
        capacity = capacity_from_words(words) if words else None
        if capacity is not None and capacity.cores < 1:
            capacity = None
        if capacity is None and words:
            why = f"it said {' '.join(words)!r}"
        if capacity is None:
            log.warning("%s: cannot read its cores and memory (%s): only a [worker] category applies there", host, why)
        self._measured[host] = capacity
        return capacity

    def close_agents(self, timeout_s: float = 2.0) -> None:
        """Stop every node agent (each ends once its jobs have); wait up to ``timeout_s`` for them."""
        with self._lock:
            entries, self._agents = [e for e in self._agents.values() if e], {}
        deadline = time.monotonic() + timeout_s
        for agent, _, _ in entries:
            agent.shutdown(0)
        for agent, conn, chan in entries:
            agent.shutdown(max(0.0, deadline - time.monotonic()))
            self.close_channel(agent.name, conn, chan)

    def close_all(self) -> None:
        self.close_agents(0)
        with self._lock:
            conns, self._conns = self._conns, {}
        for host_conns in conns.values():
            for conn in host_conns:
                conn.client.close()


def _keepalive(sock: socket.socket) -> None:
    """Notice a dead node in about a minute rather than the kernel's two hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class SSHBackend:
    """Jobs on SSH nodes for one run: its connections and node agents, and its running jobs.

    ``close()`` stops the node agents and closes every connection: nothing of the run
    stays on a node. ``cancel()`` stops every job it runs, on every node, in parallel.
    """

    def __init__(self, worker):
        self.worker = worker
        self.pool = SSHPool(SSHSettings(worker.ssh_config, worker.accept_new_host_keys, worker.node_agent))
        self.running = RunningJobs()  # id(handle) → _SessionJob or _AgentJob

    def reach(self, hosts: list[str], on_retry: Callable[[str], None] = lambda message: None,
              retries: int | None = None, retry_delay: float | None = None) -> dict[str, NodeUnreachable]:
        """Connect to ``hosts`` now (connections kept for the jobs); the ones that stayed unreachable, with why.

        ``retries``/``retry_delay``: instead of the config's ``[worker] retries`` and ``retry_delay``."""
        return check_nodes(self.pool, hosts, self.worker.retries if retries is None else retries,
                           self.worker.retry_delay if retry_delay is None else retry_delay, on_retry)

    def run(self, job: Job, on_line: Callable[[str], None] = lambda line: None, stop=None) -> JobResult:
        w = self.worker
        return run_ssh(job, w.env_file, on_line, w.kill_grace, w.max_time, pool=self.pool, running=self.running,
                       min_free_mb=w.temp_min_free)

    def known_capacity(self, host: str) -> Capacity | None:
        """``host``'s cores and memory as its node agent said them; None before it runs, or without one."""
        return self.pool.known_capacity(host)

    def cancel(self, grace_s: float = 10.0) -> int:
        """Stop every job running over SSH (SIGTERM on the node, SIGKILL after ``grace_s``)."""
        self.running.cancelled.set()
        jobs = self.running.items()
        for job in jobs:
            job.stop(grace_s)
        for job in self.running.wait_empty(grace_s + 5):
            job.drop()
        return len(jobs)

    def close(self) -> None:
        """The run is over: stop the node agents (their jobs have ended), close every connection."""
        try:
            self.pool.close_agents()
        finally:
            self.pool.close_all()


def check_nodes(
    pool: SSHPool,
    hosts: list[str],
    retries: int = 0,
    retry_delay_s: float = 10.0,
    on_retry: Callable[[str], None] = lambda message: None,
) -> dict[str, NodeUnreachable]:
    """Connect to every host at once and start its agent; returns the ones that stayed unreachable, with why."""
    errors: dict[str, NodeUnreachable] = {}

    def try_host(host: str) -> None:
        for attempt in range(retries + 1):
            try:
                pool.check(host)
                if pool.agent(host) is None:
                    pool.measure(host)
                return
            except NodeUnreachable as err:
                if not err.transient or attempt == retries:
                    errors[host] = err
                    return
                on_retry(f"{err}; retry {attempt + 1} of {retries} in {retry_delay_s:g} s")
                time.sleep(retry_delay_s)

    threads = [threading.Thread(target=try_host, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {h: errors[h] for h in hosts if h in errors}


def run_ssh(
    job: Job,
    env_file: str | None,
    on_line: Callable[[str], None] = lambda line: None,
    grace_s: float = 30.0,
    max_time_s: int | None = None,
    *,
    pool: SSHPool,
    running: RunningJobs | None = None,
    min_free_mb: int = 0,
) -> JobResult:
    """Run ``job`` on ``job.host`` over ``pool``'s connection; output streams to ``on_line``
    (and to the log on the node). ``running``: the run's registry, through which a cancel
    reaches this job; ``min_free_mb``: least free space for the job's scratch folder. A job
    without a category gets its share of the node as its agent said its size (or as
    ``SSHPool.measure`` read it where there is no agent)."""
    running = running if running is not None else RunningJobs()
    host = job.host
    assert host is not None  # (placed on its node by the dispatcher)
    if running.cancelled.is_set():
        return JobResult(job, CANCELLED, "run cancelled before the job started")
    token = new_token()
    parser = OutputParser(token)
    try:
        agent = pool.agent(host)
        job = place(job, agent.capacity if agent is not None else pool.measure(host))
        # through the agent, the agent's wait4 measures the job; in a session of its own,
        # the wrapper's python3 launcher does (nothing else waits for it on the node)
        argv = wrapped_argv(job.argv, job.out_dir, job.log_path, env_file, token, grace_s, max_time_s,
                            rusage_launcher=agent is None, scratch=job.scratch, min_free_mb=min_free_mb,
                            env=job.env, links=job.ms_links, ms=job.ms,
                            column=job.data_column)
        if agent is None:
            sent, lost = _run_in_session(pool, running, host, argv, parser, on_line)
        else:
            sent, lost = _run_through_agent(running, agent, argv, parser, on_line)
    except NodeUnreachable as err:
        return JobResult(job, FAILED, str(err), connection_error=err.transient)
    except _NotStarted as err:
        return JobResult(job, FAILED, f"{job.host}: cannot start the job there: {err}")
    return _result(job, parser, sent, lost, grace_s, running.cancelled.is_set())


class _NotStarted(Exception):
    """The node could not start the job's wrapper (e.g. no bash there)."""


class _SessionJob:
    """A job running in an SSH session of its own."""

    def __init__(self, chan: paramiko.Channel):
        self._chan = chan

    def stop(self, grace_s: float) -> None:
        try:
            self._chan.sendall(f"stop {grace_s:g}\n".encode())
            self._chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def drop(self) -> None:
        """The node does not answer: dropping the session stops the job there too."""
        self._chan.close()


class _AgentJob:
    """A job started by a node agent."""

    def __init__(self, agent: NodeAgent, jid: bytes):
        self._agent, self._jid = agent, jid

    def stop(self, grace_s: float) -> None:
        self._agent.tell(self._jid, f"stop {grace_s:g}", close=True)

    def drop(self) -> None:
        """The node does not answer: dropping the agent's session stops every job of that node."""
        self._agent.abort()


def _run_in_session(pool: SSHPool, running: RunningJobs, host: str, argv: list[str], parser: OutputParser, on_line) -> tuple[bool, str]:
    """(command sent?, why the connection was lost or '')."""
    conn, chan = pool.open_channel(host)
    job = _SessionJob(chan)
    lost = ""
    sent = False
    running.add(id(job), job)
    try:
        chan.exec_command(shlex.join(argv))
        sent = True
        for raw in chan.makefile("rb"):
            parser.take(raw.decode("utf-8", "replace").rstrip("\r\n"), on_line)
    except (OSError, EOFError, paramiko.SSHException) as err:
        lost = f" ({err or type(err).__name__})"
    finally:
        running.remove(id(job))
        pool.close_channel(host, conn, chan)
    return sent, lost


def _run_through_agent(running: RunningJobs, agent: NodeAgent, argv: list[str], parser: OutputParser, on_line) -> tuple[bool, str]:
    """(command sent?, why the connection was lost or '')."""
    try:
        jid, messages = agent.start(argv)
    except AgentLost as err:
        return False, f" ({err})"
    job = _AgentJob(agent, jid)
    running.add(id(job), job)
    try:
        while True:
            kind, value = messages.get()
            if kind == OUTPUT:
                parser.take(value, on_line)
            elif kind == EXITED:
                parser.measured(value.max_rss_kb, value.user_s, value.sys_s)
                return True, ""
            elif kind == LOST:
                return True, f" ({value})"
            elif kind == NOT_STARTED:
                raise _NotStarted(value)
    finally:
        running.remove(id(job))
        agent.forget(jid)


def _result(job: Job, parser: OutputParser, sent: bool, lost: str, grace_s: float, cancelled: bool) -> JobResult:
    """The job's result from what its wrapper said, and whether its connection held."""
    ended = time.time()
    state, started, last = parser.state, parser.started_at, parser.last_words
    common: dict[str, Any] = dict(started_at=started, ended_at=ended if started else None, cpu_s=state.cpu_s, max_rss_mb=state.max_rss_mb,
                  pid=state.pid, oom_killed=state.oom_killed)
    if state.exit_code is None and state.setup_failed is None:
        if cancelled:
            return JobResult(job, CANCELLED, "cancelled (connection closed)", **common)
        if state.pid is None and not sent:
            return JobResult(job, FAILED, f"{job.host}: connection lost before WSClean started{lost}", connection_error=True, **common)
        if state.pid is None:
            return JobResult(
                job,
                FAILED,
                f"{job.host}: connection lost while starting WSClean{lost}; it may have started (the node stops it), "
                "so it is not retried: two copies must never write the same images",
                connection_error=True,
                maybe_started=True,
                **common,
            )
        return JobResult(
            job,
            FAILED,
            f"{job.host}: connection lost while WSClean was running (pid {state.pid}){lost}; "
            "the node stops the job when its connection drops; not retried, so that two copies never write the same images",
            connection_error=True,
            **common,
        )
    status, code, reason = outcome(state, last, grace_s, cancelled)
    return JobResult(job, status, reason, exit_code=code, **common)
