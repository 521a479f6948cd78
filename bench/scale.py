"""Benchmark 12, scale: a night of 5 000 jobs on 24 loopback sshd nodes × 4 slots.

Why: a survey's night is thousands of MSs on tens of nodes, and the cost per job of
Prefect's bookkeeping (task runs, states, logs) is what caps how fast jobs can start.
Fake WSClean jobs of 0.5–3 s (their MSs' main tables in proportion, so that largest
first orders them), run once with the embedded server (SQLite) and once against a real
``prefect server`` on PostgreSQL (a cluster of the bench's own on 127.0.0.1). A 300-job
run (the reliability soak's size) on the same nodes is the memory baseline. Reported:
jobs started per second, utilisation against a dispatcher with no cost between jobs,
imgpipe's peak RSS, the server's CPU per task run, the database's size, and how long the
flow run's page takes to list its task runs in headless Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

JOBS, NODES, SLOTS, SOAK = 5000, 24, 4, 300
RUN_TIMEOUT_S = 3600
TICK = os.sysconf("SC_CLK_TCK")
UI_TASK_LIST = """(() => {
  const tab = Array.from(document.querySelectorAll('.p-tab')).find(t => t.innerText.trim() === 'Task Runs');
  if (!tab) return false;
  if (!tab.classList.contains('p-tab__active')) { tab.click(); return false; }
  return document.querySelectorAll('.flow-run-task-runs .task-run-list-item').length;
})()"""
"""True once the flow run's Task Runs tab lists task runs (it clicks the tab when it appears)."""


def cpu_s(pids) -> float:
    """User + system CPU seconds of these processes (those that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def processes_named(name: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open(f"/proc/{entry}/comm").read().strip() == name:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def make_ms(folder: Path, seconds: Path, count: int, seed: int) -> tuple[list[str], list[float]]:
    rng = random.Random(seed)
    ms, lengths = [], []
    for i in range(count):
        path = folder / f"sb{i:05d}.MS"
        path.mkdir(parents=True)
        lengths.append(round(rng.uniform(0.5, 3.0), 2))
        (seconds / path.name).write_text(f"{lengths[-1]:.2f}")
        with open(path / "table.f0", "wb") as f:
            f.truncate(int(lengths[-1] * 1e6))  # sparse: 1 MB of main table per second of job
        ms.append(str(path))
    return ms, lengths


def run_measured(py: str, cfg: Path, ms: list[str], env: dict, trace: Path, server_cpu) -> dict:
    """One imgpipe run, sampled every 0.5 s (imgpipe's RSS, the server's CPU); the jobs' own trace read after."""
    from support.processes import peak_rss_mib, rss_mib
    from support.sshd_nodes import descendants

    trace.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([py, "-m", "imgpipe", str(cfg), *ms], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    samples, server, waited, own_peak = [], [], [], [0.0]
    # wait4 (not Popen.poll, which would reap the child first) gives the run's CPU, and a peak
    # RSS that counts the embedded server (a reaped child): imgpipe's own peak is its VmHWM,
    # last read at most 0.5 s before it exits
    waiter = threading.Thread(target=lambda: waited.append(os.wait4(proc.pid, 0)), daemon=True)
    waiter.start()

    def sample():
        while not waited:
            seen = server_cpu(descendants(proc.pid))
            if seen is not None:
                server.append((time.time(), seen))
            rss, hwm = rss_mib(proc.pid), peak_rss_mib(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t0, rss))
            if hwm is not None:
                own_peak[0] = max(own_peak[0], hwm)
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks, err_chunks = [], []
    readers = [threading.Thread(target=lambda s=s, c=c: c.append(s.read()), daemon=True)
               for s, c in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for reader in readers:
        reader.start()
    waiter.join(RUN_TIMEOUT_S)
    if not waited:
        os.killpg(proc.pid, signal.SIGKILL)
        waiter.join()
    wall = time.perf_counter() - t0
    _, status, usage = waited[0]
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    for reader in readers:
        reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"imgpipe ({len(ms)} jobs) failed, rc {proc.returncode}: {err_chunks[0].decode()[-3000:]}")
    rows = [line.split() for line in trace.read_text().splitlines()]
    starts = sorted(float(t) for t, kind, _ in rows if kind == "start")
    ends = [float(t) for t, kind, _ in rows if kind == "end"]
    busy = sum(ends) - sum(starts)
    span = max(ends) - starts[0]
    # sustained start rate: starts in the middle 80 % of the dispatch, over that time
    lo, hi = starts[0] + 0.1 * span, starts[0] + 0.9 * span
    middle = [t for t in starts if lo <= t <= hi]
    return {
        "jobs": len(ms), "ended": len(ends), "command_wall_s": wall, "dispatch_wall_s": span, "busy_slot_s": busy,
        "utilisation": busy / (NODES * SLOTS * span),
        "starts_per_s": (len(middle) - 1) / (middle[-1] - middle[0]) if len(middle) > 1 else 0.0,
        "peak_rss_mib": own_peak[0], "peak_rss_with_children_mib": usage.ru_maxrss / 1024.0, "imgpipe_cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_samples": [(round(t, 1), round(m, 1)) for t, m in samples[:: max(1, len(samples) // 60)]],
        # the embedded server's CPU from the first job's start on (its own start-up left out)
        "server_cpu_s": (max(c for _, c in server) - max([c for t, c in server if t <= starts[0]] or [0.0])) if server else None,
    }


def flow_run_id(api: str) -> str:
    req = urllib.request.Request(api + "/flow_runs/filter", data=json.dumps({"limit": 1, "sort": "START_TIME_DESC"}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=60).read())[0]["id"]


def ui_seconds(env: dict) -> dict:
    """Seconds until the last flow run's page lists its task runs (headless Chromium), twice: cold and warm."""
    from ui_timing import headless_chromium, seconds_until

    api = env["PREFECT_API_URL"]
    url = f"{api.rsplit('/api', 1)[0]}/runs/flow-run/{flow_run_id(api)}"
    with headless_chromium() as port:
        first, shown = seconds_until(port, url, UI_TASK_LIST)
        second, _ = seconds_until(port, url, UI_TASK_LIST)
    return {"ui_task_list_s": first, "ui_task_list_again_s": second, "ui_rows_shown": shown}


def bench_scale(tmp: Path, py: str, fake_wsclean, env_for, greedy_makespan) -> dict:
    from support.postgres import running_postgres, why_no_postgres
    from support.prefect_server import server_process
    from support.sshd_nodes import SSHNodes, descendants, sshd_available

    if not sshd_available():
        return {"skipped": "openssh-server is not installed"}
    fake = fake_wsclean(tmp)
    trace = tmp / "trace"
    ms, lengths = make_ms(tmp / "data", tmp / "seconds", JOBS, 12)
    soak_ms, _ = make_ms(tmp / "soak", tmp / "seconds", SOAK, 13)
    warm_ms, _ = make_ms(tmp / "warm", tmp / "seconds", 1, 14)
    slots = NODES * SLOTS
    ideal = sum(lengths) / (slots * greedy_makespan(sorted(lengths, reverse=True), slots))
    out: dict = {"jobs": JOBS, "nodes": NODES, "slots_per_node": SLOTS, "ideal_utilisation": ideal,
                 "mean_job_s": sum(lengths) / JOBS}
    (tmp / "nodes").mkdir()
    nodes = SSHNodes(tmp / "nodes", NODES)
    try:
        def config(name: str) -> Path:
            cfg = tmp / f"{name}.toml"
            cfg.write_text(f"[worker]\nnodes = 'node[101-{100 + NODES}]'\nmax_concurrent = {SLOTS}\nssh_config = '{nodes.ssh_config}'\n"
                           f"wsclean = '{fake}'\n[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp}/out-{name}'\n")
            return cfg

        def uvicorn_cpu(pids):
            ours = [p for p in pids if "uvicorn" in _cmdline(p)]
            return cpu_s(ours) if ours else None

        # 1. the embedded server (SQLite in PREFECT_HOME), 300 jobs then 5 000 on a home of their own each
        for name, batch in (("soak", soak_ms), ("sqlite", ms)):
            env = env_for(tmp / f"home-{name}")
            subprocess.run([py, "-m", "imgpipe", str(config(f"warm-{name}")), *warm_ms], env=env, capture_output=True, check=True)
            print(f"  {name}: {len(batch)} jobs, embedded server", flush=True)
            out[name] = run_measured(py, config(name), batch, env, trace, uvicorn_cpu)
            out[name]["server_cpu_per_task_run_ms"] = 1000 * out[name]["server_cpu_s"] / len(batch)
            home = tmp / f"home-{name}"
            out[name]["db_mib"] = sum(p.stat().st_size for p in home.glob("prefect.db*")) / 2**20
        with server_process(tmp / "home-sqlite", tmp / "ui-sqlite.log", {"PREFECT_SERVER_UI_ENABLED": "true"},
                            locked=False) as (env, _):  # (the UI's timing, without its login page)
            out["sqlite"].update(ui_seconds(env))
        # 2. a running `prefect server` on PostgreSQL
        reason = why_no_postgres()
        if reason:
            out["postgresql"] = {"skipped": reason}
        else:
            with running_postgres() as pg:
                server_env = {"PREFECT_API_DATABASE_CONNECTION_URL": pg.url, "PREFECT_SERVER_UI_ENABLED": "true"}
                with server_process(tmp / "home-pg", tmp / "server-pg.log", server_env, locked=False) as (env, server):
                    subprocess.run([py, "-m", "imgpipe", str(config("warm-pg")), *warm_ms], env=env, capture_output=True, check=True)

                    def server_tree():
                        return [server.pid, *descendants(server.pid)]

                    api0, pg0 = cpu_s(server_tree()), cpu_s(processes_named("postgres"))
                    print(f"  postgresql: {JOBS} jobs, running server", flush=True)
                    run = run_measured(py, config("pg"), ms, env, trace, lambda pids: None)
                    run["server_cpu_s"] = cpu_s(server_tree()) - api0
                    run["postgres_cpu_s"] = cpu_s(processes_named("postgres")) - pg0
                    run["server_cpu_per_task_run_ms"] = 1000 * run["server_cpu_s"] / JOBS
                    run["postgres_cpu_per_task_run_ms"] = 1000 * run["postgres_cpu_s"] / JOBS
                    run["db_mib"] = int(pg.query("SELECT pg_database_size('prefect')")) / 2**20
                    run.update(ui_seconds(env))
                    out["postgresql"] = run
    finally:
        nodes.stop()
    out["rss_growth_mib"] = out["sqlite"]["peak_rss_mib"] - out["soak"]["peak_rss_mib"]
    out["starts_per_s"] = max(out[k]["starts_per_s"] for k in ("sqlite", "postgresql") if "starts_per_s" in out[k])
    return out


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    return ""
