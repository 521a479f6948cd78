"""The head start: a command-line run's first jobs start before its embedded Prefect server
answers, and the node cap across runs and the task-run history stay true."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from imgpipe.cli.head_start import why_not
from imgpipe.core.config import load_config
from imgpipe.core.plan import Job, Plan
from imgpipe.orchestration import run_locks

from support.fake_wsclean import install, peak_overlap, read_trace
from support.processes import wait_for

EARLY = "before the flow run began"

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from imgpipe.orchestration import run_locks
    go, locks = Path(sys.argv[1]), tuple(Path(p) for p in sys.argv[2:])
    print("exclusive" if run_locks.try_exclusive(locks) else "held", flush=True)
    while not go.exists():
        time.sleep(0.05)
    run_locks.share_now()
    print("shared", flush=True)
    time.sleep(60)
""")


def _holder(go: Path, *locks: Path) -> subprocess.Popen:
    """Another process that tries a head start's locks and holds them until ``go`` exists."""
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(go), *map(str, locks)], stdout=subprocess.PIPE, text=True)


def test_a_head_start_excludes_every_other_run_until_it_shares(tmp_path):
    home, go = tmp_path / "home", tmp_path / "go"
    locks = (run_locks.lock_path(home),)
    holder = _holder(go, *locks)
    try:
        assert holder.stdout.readline().strip() == "exclusive"
        assert not run_locks.try_exclusive(locks)
        entered, waited = threading.Event(), threading.Event()

        def other_run():
            with run_locks.run_holding(locks, on_wait=waited.set):
                entered.set()
                time.sleep(0.5)

        run = threading.Thread(target=other_run)
        run.start()
        assert waited.wait(5) and not entered.wait(0.5)  # a run waits while the head start is exclusive
        go.touch()
        assert holder.stdout.readline().strip() == "shared"
        assert entered.wait(5)  # ... and goes on once it shares
        run.join()
        assert not run_locks.try_exclusive(locks)  # a live run (shared) still excludes a head start
    finally:
        holder.kill()
        holder.wait()
    assert run_locks.try_exclusive(locks)  # the kernel dropped the dead holder's lock
    run_locks.share_now()
    with run_locks.run_holding(locks):
        pass


def test_a_run_on_a_loopback_server_also_holds_that_servers_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    home = tmp_path / "home"
    server = run_locks.server_lock_path(4321)
    assert run_locks.lock_paths("http://127.0.0.1:4321/api", home) == (run_locks.lock_path(home), server)
    assert run_locks.lock_paths("http://localhost:4321/api/", home)[1] == server
    assert run_locks.lock_paths("https://prefect.example.org/api", home) == (run_locks.lock_path(home),)
    assert run_locks.lock_paths(None, home) == (run_locks.lock_path(home),)
    # a run of another PREFECT_HOME on that server excludes a head start, which then holds neither lock
    other_home = (run_locks.lock_path(tmp_path / "other"), server)
    go = tmp_path / "go"
    other = _holder(go, *other_home)
    try:
        assert other.stdout.readline().strip() == "exclusive"
        assert not run_locks.try_exclusive(run_locks.lock_paths("http://127.0.0.1:4321/api", home))
        alone = _holder(tmp_path / "go2", run_locks.lock_path(home))
        try:
            assert alone.stdout.readline().strip() == "exclusive"  # the home's lock was let go
        finally:
            alone.kill()
            alone.wait()
    finally:
        other.kill()
        other.wait()


def _config(tmp_path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(str(path))


def test_no_head_start_beyond_this_machine_or_with_another_database(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    cfg = _config(tmp_path, "[worker]\nnodes = 'localhost'\n[wsclean]\nname = 'i'\n")
    job = Job(host=None, argv=("wsclean", "a.ms"), ms=("a.ms",), obs_id=None, sw=None, out_dir=str(tmp_path), name="i")
    local = Plan((job,), pool=("localhost",))
    assert why_not(cfg, local, environ={}) is None
    assert why_not(cfg, local, environ={"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://db/prefect"})
    remote = Plan((job,), pool=("node101",))
    assert why_not(cfg, remote, environ={}) == "a node other than this machine"


def _db_rows(home: Path, query: str, *args) -> list:
    with sqlite3.connect(home / "prefect.db") as db:
        return db.execute(query, args).fetchall()


def _eventually(home: Path, query: str, *args, n: int = 1, wait_s: float = 20) -> list:
    """The rows of ``query`` once there are ``n``: the server records task runs from their
    events, and finishes that in its own graceful stop, after imgpipe has exited."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = _db_rows(home, query, *args)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _when(text: str) -> float:
    """A time as Prefect's SQLite database holds it (UTC, no zone)."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _one_fake_job(tmp_path: Path, ms_copy, seconds: str) -> tuple[Path, Path, Path]:
    """A config running the fake WSClean for ``seconds`` on one copied MS: (config, MS, trace)."""
    fake, trace = install(tmp_path)
    trace.with_suffix(".seconds").write_text(seconds)
    (a,) = ms_copy("SW01.MS")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n")
    return cfg, a, trace


def test_the_first_job_starts_before_the_server_answers_and_is_the_flow_runs_task_run(run_imgpipe, ms_copy, tmp_path):
    home = tmp_path / "home"
    cfg, a, trace = _one_fake_job(tmp_path, ms_copy, "2")
    res = run_imgpipe(cfg, a, env={"PREFECT_HOME": str(home)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert EARLY in res.stdout + res.stderr
    (start,) = [t for *_, kind, t in read_trace(trace) if kind == "start"]
    ((flow_run_id, flow_started),) = _db_rows(home, "select id, start_time from flow_run")
    assert start < _when(flow_started)  # WSClean ran before Prefect had the flow run
    ((task_run_id, state),) = _eventually(home, "select id, state_type from task_run where flow_run_id = ? and "
                                          "name like 'wsclean %' and state_type = 'COMPLETED'", flow_run_id)
    assert state == "COMPLETED"
    logged = [m for (m,) in _eventually(home, "select message from log where task_run_id = ?", task_run_id, n=3)]
    assert any(EARLY in m for m in logged)  # the history says when the job really started
    assert any(m.startswith("fake wsclean on local") for m in logged)  # and holds its output from the first line


def test_two_runs_of_one_prefect_home_keep_the_node_cap_with_a_head_start(run_imgpipe, sim_dir, tmp_path):
    home = tmp_path / "home"
    fake, trace = install(tmp_path)
    trace.with_suffix(".seconds").write_text("2")
    runs = []
    for who in ("a", "b"):
        folder = tmp_path / who
        ms = [shutil.copytree(sim_dir / name, folder / name) for name in ("SW01.MS", "SW02.MS")]
        cfg = folder / "c.toml"
        cfg.write_text(f"[worker]\nwsclean = '{fake}'\nmax_concurrent = 1\n[wsclean]\nname = 'i'\n"
                       f"out-dir = '{folder}/$ms_basename$'\n")
        runs.append((cfg, ms))
    procs = [run_imgpipe.popen(cfg, *ms, env={"PREFECT_HOME": str(home)}) for cfg, ms in runs]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    rows = read_trace(trace)
    assert sum(kind == "end" for *_, kind, _ in rows) == 4
    assert peak_overlap(rows) == 1  # one slot on this machine, across both runs
    assert sum(EARLY in out + err for out, err in outputs) == 1  # one run had the head start, the other waited


def test_a_server_that_does_not_start_stops_the_jobs_started_meanwhile(run_imgpipe, ms_copy, tmp_path):
    home = tmp_path / "home"
    (home / "prefect.db").mkdir(parents=True)  # no database can open there: the server exits
    fake, trace = install(tmp_path)
    trace.with_suffix(".seconds").write_text("120")
    (a,) = ms_copy("SW01.MS")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n")
    res = run_imgpipe(cfg, a, env={"PREFECT_HOME": str(home)}, timeout=200)
    assert res.returncode == 1
    assert "the embedded Prefect server did not start" in res.stderr
    assert "the 1 job(s) started meanwhile were stopped" in res.stderr
    assert "Traceback" not in res.stderr
    ((_, pid, kind, _),) = read_trace(trace)
    assert kind == "start"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the early WSClean is gone with the run


def test_the_jobs_started_early_take_the_first_slots_the_others_keep_their_order(tmp_path):
    from imgpipe.core.config import WorkerConfig
    from imgpipe.orchestration.dispatcher import Dispatcher

    jobs = tuple(Job(host=None, argv=("wsclean", f"{i}.ms"), ms=(f"{i}.ms",), obs_id=None, sw=None, out_dir=str(tmp_path),
                     name=f"i{i}") for i in range(4))
    order = Dispatcher.start_order(Plan(jobs), WorkerConfig(order="as_given"), frozenset({f"{tmp_path}/i2"}))
    assert [job.name for job in order] == ["i2", "i0", "i1", "i3"]


SERVER_LIKE = "import time; time.sleep(60)"
"""A process whose command line reads like a Prefect server's (``server_port`` knows it by that)."""


def _server_like(host: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER_LIKE, "prefect.server.api.server:create_app", "--host", host,
                             "--port", "4321"], env={**os.environ, **(env or {})})


def test_a_kept_server_gives_a_head_start_only_on_loopback_and_this_homes_database(tmp_path, monkeypatch):
    from imgpipe.orchestration.kept_server import server_argv_of, server_environ

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    cfg = _config(tmp_path, "[worker]\nnodes = 'localhost'\n[wsclean]\nname = 'i'\n[prefect]\nserver = 'kept'\n")
    job = Job(host=None, argv=("wsclean", "a.ms"), ms=("a.ms",), obs_id=None, sw=None, out_dir=str(tmp_path), name="i")
    local = Plan((job,), pool=("localhost",))
    servers = {"loopback": _server_like("127.0.0.1"), "anywhere": _server_like("0.0.0.0"),
               "postgres": _server_like("127.0.0.1",
                                        {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://db/prefect"})}
    try:
        assert wait_for(lambda: all(server_environ(s.pid) is not None and "--host" in server_argv_of(s.pid)
                                    for s in servers.values()), 10)
        verdicts = {}
        for name, server in servers.items():
            (home / "server.pid").write_text(str(server.pid))
            verdicts[name] = why_not(cfg, local, kept_pid=server.pid, environ={})
        assert verdicts["loopback"] is None
        assert "listens beyond this machine (--host 0.0.0.0)" in verdicts["anywhere"]
        assert verdicts["postgres"] == "the kept Prefect server uses a database other than PREFECT_HOME's"
        # this home's pid file names another server: not the one this run uses
        assert "is not this PREFECT_HOME's" in why_not(cfg, local, kept_pid=servers["anywhere"].pid, environ={})
        # and the embedded server's head start stays off while a server runs on the home
        assert "runs on this PREFECT_HOME" in why_not(cfg, local, environ={})
    finally:
        for server in servers.values():
            server.kill()
            server.wait()


@pytest.mark.prefect
def test_a_kept_server_run_starts_early_unless_another_run_of_its_server_is_alive(run_imgpipe, sim_dir, tmp_path,
                                                                                 monkeypatch):
    """The head start with the kept server, and the kept server's lock: a run of another
    PREFECT_HOME on it (by PREFECT_API_URL) holds that lock while it may hold node slots."""
    from imgpipe.orchestration.kept_server import server_port

    from support.prefect_server import free_port

    port = free_port()
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CACHE_HOME", run_imgpipe.base_env()["XDG_CACHE_HOME"])  # where the runs' locks are
    fake, trace = install(tmp_path)
    seconds = trace.with_suffix(".seconds")
    seconds.write_text("0.2")
    a = shutil.copytree(sim_dir / "SW01.MS", tmp_path / "SW01.MS")
    kept_cfg = tmp_path / "kept.toml"
    kept_cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n"
                        "[prefect]\nserver = 'kept'\n")
    other_cfg = tmp_path / "other.toml"
    other_cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'o'\nout-dir = '$ms_basename$'\n")
    kept = {"PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port)}
    pid_file = home / "server.pid"
    try:
        first = run_imgpipe(kept_cfg, a, env=kept)  # starts the kept server
        assert first.returncode == 0, first.stderr[-3000:]
        assert EARLY in first.stdout + first.stderr  # its job started while the server started
        again = run_imgpipe(kept_cfg, a, "--force", env=kept)
        assert again.returncode == 0, again.stderr[-3000:]
        assert EARLY in again.stdout + again.stderr  # the kept server answers; the job did not wait for Prefect

        seconds.write_text("6")
        trace.unlink()
        other = run_imgpipe.popen(other_cfg, a, env={"PREFECT_HOME": str(tmp_path / "other-home"),
                                                    "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                                                    # (the kept server's auth string, as any client of it needs)
                                                    "PREFECT_API_AUTH_STRING": (home / "imgpipe-server.auth").read_text().strip()})
        try:
            assert wait_for(lambda: any(kind == "start" for *_, kind, _ in read_trace(trace)), 120)
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "go"),
                                       str(run_locks.server_lock_path(port))],
                                      stdout=subprocess.PIPE, text=True, env=run_imgpipe.base_env(kept))
            try:
                assert holder.stdout.readline().strip() == "held"  # the other home's run holds the server's lock
            finally:
                holder.kill()
                holder.wait()
            seconds.write_text("0.2")
            during = run_imgpipe(kept_cfg, a, "--force", env=kept)
            assert during.returncode == 0, during.stderr[-3000:]
            assert EARLY not in during.stdout + during.stderr  # so this run of the server waited for its flow
        finally:
            out, err = other.communicate(timeout=300)
        assert other.returncode == 0, err[-3000:]
        rows = read_trace(trace)
        assert sum(kind == "end" for *_, kind, _ in rows) == 2
    finally:
        if pid_file.exists() and pid_file.read_text().strip().isdigit():
            pid = int(pid_file.read_text())
            if server_port(pid) is not None:
                os.kill(pid, 9)


LISTENER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket()
    s.bind((sys.argv[1], 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    time.sleep(60)
""")
"""A process that listens, as a foreground ``prefect server start`` does (it never accepts)."""


def _listener(host: str, env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER, host], env=env, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_a_running_server_gives_a_head_start_only_on_loopback_for_this_homes_database(tmp_path, monkeypatch):
    from support.prefect_server import free_port

    home = tmp_path / "home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    cfg = _config(tmp_path, "[worker]\nnodes = 'localhost'\n[wsclean]\nname = 'i'\n")
    job = Job(host=None, argv=("wsclean", "a.ms"), ms=("a.ms",), obs_id=None, sw=None, out_dir=str(tmp_path), name="i")
    local = Plan((job,), pool=("localhost",))
    servers = {"this home": _listener("127.0.0.1", {**base, "PREFECT_HOME": str(home)}),
               "anywhere": _listener("0.0.0.0", {**base, "PREFECT_HOME": str(home)}),
               "postgres": _listener("127.0.0.1", {**base, "PREFECT_HOME": str(home),
                                                   "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://db/p"}),
               "other home": _listener("127.0.0.1", {**base, "PREFECT_HOME": str(tmp_path / "other")})}
    try:
        verdicts = {name: why_not(cfg, local, environ={}, api_url=f"http://127.0.0.1:{port}/api")
                    for name, (_, port) in servers.items()}
        assert verdicts["this home"] is None
        port = servers["anywhere"][1]
        assert verdicts["anywhere"] == f"the Prefect server on port {port} listens beyond this machine (on 0.0.0.0)"
        assert verdicts["postgres"].endswith("uses a database other than its PREFECT_HOME's")
        assert "serves another PREFECT_HOME" in verdicts["other home"]
        free = free_port()
        assert why_not(cfg, local, environ={}, api_url=f"http://127.0.0.1:{free}/api") == f"nothing listens on port {free}"
        assert "beyond this machine's loopback" in why_not(cfg, local, environ={}, api_url="http://prefect.example.org/api")
        # runs of other machines share the server by their user's word
        shared = _config(tmp_path, "[worker]\nnodes = 'localhost'\n[wsclean]\nname = 'i'\n[prefect]\nms_locks = 'server'\n")
        assert "MS locks on the Prefect server" in why_not(shared, local, environ={},
                                                          api_url=f"http://127.0.0.1:{servers['this home'][1]}/api")
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()


@pytest.mark.prefect
def test_a_run_on_a_running_server_of_its_home_starts_early_and_its_task_run_is_recorded(run_imgpipe, ms_copy, tmp_path):
    """A real ``prefect server start`` (foreground, as a user runs it) on this run's
    PREFECT_HOME; a run of another home that reaches it gets no head start."""
    from support.prefect_server import running_server

    home = tmp_path / "server-home"
    cfg, a, trace = _one_fake_job(tmp_path, ms_copy, "0.5")
    with running_server(home, tmp_path / "server.log") as server_env:
        url = {"PREFECT_API_URL": server_env["PREFECT_API_URL"], "PREFECT_API_AUTH_STRING": server_env["PREFECT_API_AUTH_STRING"]}
        res = run_imgpipe(cfg, a, env={"PREFECT_HOME": str(home), **url})
        assert res.returncode == 0, res.stderr[-3000:]
        assert EARLY in res.stdout + res.stderr
        (start,) = [t for *_, kind, t in read_trace(trace) if kind == "start"]
        ((flow_run_id, flow_started),) = _db_rows(home, "select id, start_time from flow_run")
        assert start < _when(flow_started)
        assert _eventually(home, "select id from task_run where flow_run_id = ? and name like 'wsclean %' and "
                           "state_type = 'COMPLETED'", flow_run_id)  # the early job is the flow run's task run
        other = run_imgpipe(cfg, a, "--force", env={"PREFECT_HOME": str(tmp_path / "other-home"), **url})
        assert other.returncode == 0, other.stderr[-3000:]
        assert EARLY not in other.stdout + other.stderr
        assert len(_db_rows(home, "select id from flow_run")) == 2  # both recorded by the server
