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
from imgpipe.orchestration import home_lock

from support.fake_wsclean import install, peak_overlap, read_trace

EARLY = "before the Prefect server answered"

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from imgpipe.orchestration import home_lock
    home, go = Path(sys.argv[1]), Path(sys.argv[2])
    assert home_lock.try_exclusive(home)
    print("exclusive", flush=True)
    while not go.exists():
        time.sleep(0.05)
    home_lock.share_now(home)
    print("shared", flush=True)
    time.sleep(60)
""")


def test_a_head_start_excludes_every_other_run_until_it_shares(tmp_path):
    home, go = tmp_path / "home", tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), str(go)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "exclusive"
        assert not home_lock.try_exclusive(home)
        entered, waited = threading.Event(), threading.Event()

        def other_run():
            with home_lock.run_holding(home, on_wait=waited.set):
                entered.set()
                time.sleep(0.5)

        run = threading.Thread(target=other_run)
        run.start()
        assert waited.wait(5) and not entered.wait(0.5)  # a run waits while the head start is exclusive
        go.touch()
        assert holder.stdout.readline().strip() == "shared"
        assert entered.wait(5)  # ... and goes on once it shares
        run.join()
        assert not home_lock.try_exclusive(home)  # a live run (shared) still excludes a head start
    finally:
        holder.kill()
        holder.wait()
    assert home_lock.try_exclusive(home)  # the kernel dropped the dead holder's lock
    home_lock.share_now(home)
    with home_lock.run_holding(home):
        pass


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


def test_the_first_job_starts_before_the_server_answers_and_is_the_flow_runs_task_run(run_imgpipe, ms_copy, tmp_path):
    home = tmp_path / "home"
    fake, trace = install(tmp_path)
    trace.with_suffix(".seconds").write_text("2")
    (a,) = ms_copy("SW01.MS")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n")
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
