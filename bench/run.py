"""imgpipe benchmarks: each prints its raw figures and a ratio against a baseline measured
in the same run, and the results go to bench/RESULTS.md. Run with `make bench`.

1. orchestration overhead: 50 one-second fake WSClean jobs, max_concurrent = 4, against
   `xargs -P 4` running the same commands (also with a long-lived `prefect server`);
2. slot utilisation on 3 real local sshd nodes (2 slots each), 60 jobs of uneven length,
   largest first (the default) and in plan order;
3. planning at scale: dry runs of 10 000 MS paths and of 1 000 obs_ids × 16 SWs;
4. real imaging: the demo MSs through imgpipe against the same wsclean commands run directly;
5. against the original: PyPI's nenucal (its ``imgpipe`` command), installed at bench time
   in a venv of its own outside the repository, and imgpipe on the same 50 one-second fake
   WSClean jobs on localhost, 4 at once.

``python bench/run.py overhead original`` runs only the benchmarks named.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The test suite's helpers (tests/support: real sshd nodes, a real Prefect server) run the
# benchmarks' daemons too, so that both start them the same way.
sys.path.insert(0, str(REPO / "tests"))
PY = sys.executable
# The fake WSClean: sleeps (1 s, or what seconds/<MS name> says) between two trace lines.
# Only bash builtins around the sleep ($EPOCHREALTIME, read): with date, cat, dirname
# and basename, five processes of its own bookkeeping per job counted as idle slot time.
FAKE = """#!/bin/bash
if [ $# -eq 0 ]; then exec wsclean; fi
echo "$EPOCHREALTIME start ${IMGPIPE_NODE:-local}" >> TRACE
s=1; last=${@: -1}; { read -r s < "${0%/*}/seconds/${last##*/}"; } 2> /dev/null
sleep "$s"
echo "$EPOCHREALTIME end ${IMGPIPE_NODE:-local}" >> TRACE
"""


def env_for(home: Path) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "CI": "true"}
    env.pop("PREFECT_API_URL", None)
    return env


def timed(argv, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a command (which must succeed)."""
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {res.stderr[-2000:]}")
    return wall, res


def peak_rss_of(argv, **kw) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of a command, measured with wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:3]} failed: {err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, out.decode()


def fake_wsclean(folder: Path) -> Path:
    path = folder / "fake-wsclean"
    path.write_text(FAKE.replace("TRACE", str(folder / "trace")))
    path.chmod(0o755)
    (folder / "seconds").mkdir(exist_ok=True)
    return path


def bench_overhead(tmp: Path) -> dict:
    fake = fake_wsclean(tmp)
    data = tmp / "data"
    ms = []
    for i in range(50):
        (data / f"obs{i:02d}.MS").mkdir(parents=True)
        ms.append(str(data / f"obs{i:02d}.MS"))
    cfg = tmp / "c.toml"
    cfg.write_text(f"[worker]\nmax_concurrent = 4\nwsclean = '{fake}'\n[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp}/out'\n")
    env = env_for(tmp / "prefect")
    subprocess.run([PY, "-m", "imgpipe", str(cfg), ms[0]], env=env, capture_output=True)  # Prefect's DB migrations, once
    plan = tmp / "plan.json"
    subprocess.run([PY, "-m", "imgpipe", str(cfg), *ms, "--dry-run", "--plan-json", str(plan)], env=env, check=True, capture_output=True)
    lines = "".join(shlex.join(j["argv"]) + "\n" for j in json.loads(plan.read_text())["jobs"])
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", "4", "-L", "1", "-I", "{}", "bash", "-c", "{}"], input=lines, text=True, check=True, capture_output=True)
    xargs50 = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", "4", "-L", "1", "-I", "{}", "bash", "-c", "{}"], input="".join(lines.splitlines(True)[:4]), text=True, check=True, capture_output=True)
    xargs4 = time.perf_counter() - t0
    imgpipe4, _ = timed([PY, "-m", "imgpipe", str(cfg), *ms[:4], "--force"], env=env)
    (tmp / "trace").unlink(missing_ok=True)
    imgpipe50, _ = timed([PY, "-m", "imgpipe", str(cfg), *ms, "--force"], env=env)
    # from the jobs' own trace: the fixed part is what the run spends outside its jobs'
    # span (before the first start, after the last end); per job, what the span adds to xargs'
    times = [float(line.split()[0]) for line in (tmp / "trace").read_text().splitlines()]
    span = max(times) - min(times)
    startup = imgpipe50 - span
    per_job = (span - xargs50) / 50
    # the same run against a long-lived `prefect server start` (PREFECT_API_URL set): no
    # embedded server to start, what a site with a Prefect server pays
    with prefect_server(tmp / "server-home") as server_env:
        subprocess.run([PY, "-m", "imgpipe", str(cfg), ms[0], "--force"], env=server_env, capture_output=True)  # warm
        with_server, _ = timed([PY, "-m", "imgpipe", str(cfg), *ms, "--force"], env=server_env)
    return {
        "xargs_50_s": xargs50, "imgpipe_50_s": imgpipe50, "ratio": imgpipe50 / xargs50,
        "startup_s": startup, "per_job_s": per_job, "ratio_without_startup": span / xargs50,
        "jobs_span_s": span, "imgpipe_4_s": imgpipe4, "xargs_4_s": xargs4,
        "imgpipe_50_with_server_s": with_server, "ratio_with_server": with_server / xargs50,
    }


@contextlib.contextmanager
def prefect_server(home: Path):
    """A real ``prefect server start`` on 127.0.0.1 (the tests' helper); yields the env that uses it."""
    from support.prefect_server import running_server

    try:
        with running_server(home, home.parent / "server.log") as env:
            yield env
    except RuntimeError as err:
        raise SystemExit(str(err)) from None


def bench_ssh_utilisation(tmp: Path) -> dict:
    """Two runs of the same 60 jobs: [worker] order = 'largest_first' (the default, the
    headline figure) and 'as_given'. Each fake MS's main table holds bytes in proportion
    to its job's length, as WSClean's time follows the visibilities it reads."""
    from support.sshd_nodes import SSHNodes, sshd_available

    if not sshd_available():
        return {"skipped": "openssh-server is not installed"}
    (tmp / "nodes").mkdir()
    nodes = SSHNodes(tmp / "nodes", 3)
    slots = 3 * 2
    out = {"jobs": 60}
    try:
        fake = fake_wsclean(tmp)
        rng = random.Random(7)
        ms, lengths = [], []
        for i in range(60):
            path = tmp / "data" / f"obs{i:02d}.MS"
            path.mkdir(parents=True)
            lengths.append(round(rng.uniform(0.5, 2.5), 2))
            (tmp / "seconds" / path.name).write_text(f"{lengths[-1]:.2f}")
            with open(path / "table.f0", "wb") as f:
                f.truncate(int(lengths[-1] * 1e6))  # (sparse: 1 MB of main table per second of job)
            ms.append(str(path))
        env = env_for(tmp / "prefect")
        for order in ("largest_first", "as_given"):
            cfg = tmp / f"{order}.toml"
            cfg.write_text(
                f"[worker]\nnodes = 'node[101-103]'\nmax_concurrent = 2\nssh_config = '{nodes.ssh_config}'\nwsclean = '{fake}'\n"
                f"order = '{order}'\n[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp}/out'\n"
            )
            if order == "largest_first":
                subprocess.run([PY, "-m", "imgpipe", str(cfg), ms[0]], env=env, capture_output=True)  # Prefect's DB migrations, once
            (tmp / "trace").unlink(missing_ok=True)
            wall, _ = timed([PY, "-m", "imgpipe", str(cfg), *ms, "--force"], env=env)
            rows = [line.split() for line in (tmp / "trace").read_text().splitlines()]
            times = sorted(float(t) for t, _, _ in rows)
            first, last = times[0], times[-1]
            ends = [float(t) for t, kind, _ in rows if kind == "end"]
            busy = sum(ends) - sum(float(t) for t, kind, _ in rows if kind == "start")
            in_order = sorted(lengths, reverse=True) if order == "largest_first" else lengths
            ideal = sum(lengths) / (slots * greedy_makespan(in_order, slots))
            utilisation = busy / (slots * (last - first))
            out[order] = {"jobs_run": len(ends), "busy_slot_s": busy, "dispatch_wall_s": last - first, "command_wall_s": wall,
                          "utilisation": utilisation, "utilisation_incl_startup": busy / (slots * wall),
                          "ideal_utilisation": ideal, "of_ideal": utilisation / ideal}
    finally:
        nodes.stop()
    out["utilisation"] = out["largest_first"]["utilisation"]
    return out


def greedy_makespan(lengths: list[float], slots: int) -> float:
    """Wall time of ``lengths`` run in this order, each on the first free slot, with no
    cost between jobs: the best any dispatcher can do with the jobs in this order."""
    import heapq

    free = [0.0] * slots
    for length in lengths:
        heapq.heappush(free, heapq.heappop(free) + length)
    return max(free)


def bench_planning(tmp: Path) -> dict:
    out = {}
    data = tmp / "many"
    data.mkdir()
    paths = []
    for i in range(10_000):
        p = data / f"obs{i:05d}.MS"
        p.mkdir()
        paths.append(str(p))
    cfg = tmp / "c.toml"
    cfg.write_text("[wsclean]\nname = '$ms_basename$'\nout-dir = '$ms_in$/img'\nsize = '1024 1024'\nscale = '1amin'\n")
    env = env_for(tmp / "prefect")
    # one imgpipe run with every path as an argument (~0.5 MB of argv, within Linux's 2 MB;
    # xargs would have split it into several runs of 128 kB each)
    wall, rss, _ = peak_rss_of([PY, "-m", "imgpipe", str(cfg), *paths, "--dry-run"], env=env)
    out["ms_10000"] = {"seconds": wall, "peak_mib": rss}
    obs = "".join(f"'2023{i:05d}_NT' = [{', '.join(repr(f'node{101 + (j % 16)}') for j in range(16))}]\n" for i in range(1000))
    sws = "".join(f"SW{k:02d} = [{100 + 10 * k}, {109 + 10 * k}]\n" for k in range(16))
    (tmp / "dh.toml").write_text(f"[data_level_path]\nL2 = '/net/%NODE%/data/L2'\n[spectral_windows]\n{sws}[obs_ids]\n{obs}")
    cfg2 = tmp / "c2.toml"
    cfg2.write_text(
        "[worker]\nnodes = 'node[101-116]'\nrun_on_file_host = true\n[data_handler]\nconfig_file = 'dh.toml'\n"
        "[wsclean]\nname = '$sw$'\nout-dir = '/net/node101/img/$obs_id$'\nsize = '1024 1024'\nscale = '1amin'\n"
    )
    wall, rss, text = peak_rss_of([PY, "-m", "imgpipe", str(cfg2), "2023*", "--dry-run"], env=env)
    out["obs_1000_x_sw_16"] = {"seconds": wall, "peak_mib": rss, "jobs": text.count("\n")}
    return out


def bench_imaging(tmp: Path) -> dict:
    from imgpipe.demo.simulate import PointSource, make_ms

    for name, freqs in (("SW01.MS", [60e6, 61e6, 62e6, 63e6]), ("SW02.MS", [64e6, 65e6, 66e6, 67e6])):
        make_ms(str(tmp / name), [PointSource(151.0, 50.3, 10.0)], 150.0, 50.0, freqs, n_ant=24, n_time=120, seed=1)
    cfg = tmp / "c.toml"
    cfg.write_text(REPO.joinpath("examples", "demo.toml").read_text())
    env = env_for(tmp / "prefect")
    ms = [str(tmp / "SW01.MS"), str(tmp / "SW02.MS")]
    subprocess.run([PY, "-m", "imgpipe", str(cfg), ms[0], "--dry-run"], env=env, check=True, capture_output=True, cwd=tmp)
    plan = tmp / "plan.json"
    subprocess.run([PY, "-m", "imgpipe", str(cfg), *ms, "--dry-run", "--plan-json", str(plan)], env=env, check=True, capture_output=True, cwd=tmp)
    jobs = json.loads(plan.read_text())["jobs"]
    t0 = time.perf_counter()
    procs = []
    for j in jobs:
        os.makedirs(j["out_dir"], exist_ok=True)
        procs.append(subprocess.Popen(j["argv"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    direct = time.perf_counter() - t0
    subprocess.run([PY, "-m", "imgpipe", str(cfg), ms[0], "--force"], env=env, capture_output=True, cwd=tmp)  # migrations
    wall, _ = timed([PY, "-m", "imgpipe", str(cfg), *ms, "--force"], env=env, cwd=tmp)
    return {"direct_s": direct, "imgpipe_s": wall, "ratio": wall / direct}


NENUCAL = "0.29.2"
"""The original imgpipe imgpipe is the drop-in for (its users run this version)."""
NENUCAL_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgpipe-bench" / f"nenucal-{NENUCAL}-venv"
"""The original imgpipe's venv: made on the first run of benchmark 5, reused after (never in the repository)."""


def original_imgpipe() -> tuple[Path, str]:
    """The nenucal ``imgpipe`` command (installing nenucal from PyPI if needed) and nenucal's version."""
    exe = NENUCAL_VENV / "bin" / "imgpipe"
    if not exe.exists():
        print(f"installing nenucal from PyPI into {NENUCAL_VENV} (once)", flush=True)
        subprocess.run(["python3", "-m", "venv", str(NENUCAL_VENV)], check=True)
        subprocess.run([str(NENUCAL_VENV / "bin" / "pip"), "install", "-q", f"nenucal=={NENUCAL}"], check=True)
    version = subprocess.run([str(NENUCAL_VENV / "bin" / "pip"), "show", "nenucal"], capture_output=True, text=True, check=True).stdout
    return exe, next(line.split()[1] for line in version.splitlines() if line.startswith("Version:"))


def bench_original(tmp: Path) -> dict:
    import shutil

    original, version = original_imgpipe()
    real = shutil.which("wsclean")
    # The original calls `wsclean` through `bash -lc`, whose login PATH must find the fake:
    # both tools source the same env_file, which puts it first.
    (tmp / "bin").mkdir()
    fake = tmp / "bin" / "wsclean"
    fake.write_text(FAKE.replace("exec wsclean", f"exec {real}").replace("TRACE", str(tmp / "trace")))
    fake.chmod(0o755)
    (tmp / "seconds").mkdir()
    env_file = tmp / "env.sh"
    env_file.write_text(f"export PATH={shlex.quote(str(tmp / 'bin'))}:$PATH\n")
    ms = []
    for i in range(50):
        (tmp / "data" / f"obs{i:02d}.MS").mkdir(parents=True)
        ms.append(str(tmp / "data" / f"obs{i:02d}.MS"))
    worker = f"[worker]\nnodes = 'localhost'\nmax_concurrent = 4\nenv_file = '{env_file}'\n"
    (tmp / "original.toml").write_text(worker + f"[wsclean]\nname = 'img'\nout-dir = '{tmp}/out-original/$ms_basename$'\n")
    (tmp / "imgpipe.toml").write_text(worker + f"[wsclean]\nname = 'img'\nout-dir = '{tmp}/out-imgpipe/$ms_basename$'\n")
    env = {**env_for(tmp / "prefect"), "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"}
    subprocess.run([PY, "-m", "imgpipe", str(tmp / "imgpipe.toml"), ms[0]], env=env, capture_output=True)  # DB migrations, once
    original_s, res = timed([str(original), str(tmp / "original.toml"), *ms], env=env, cwd=tmp)
    if "50/50 tasks successful" not in res.stdout:
        raise SystemExit(f"the original imgpipe did not run every job: {res.stdout[-2000:]}")
    imgpipe_s, _ = timed([PY, "-m", "imgpipe", str(tmp / "imgpipe.toml"), *ms, "--force"], env=env, cwd=tmp)
    starts = sum(" start " in line for line in (tmp / "trace").read_text().splitlines())
    return {"nenucal_version": version, "original_s": original_s, "imgpipe_s": imgpipe_s,
            "ratio": imgpipe_s / original_s, "fake_jobs_run": starts}


BENCHMARKS = {
    "overhead": bench_overhead,
    "ssh_utilisation": bench_ssh_utilisation,
    "planning": bench_planning,
    "imaging": bench_imaging,
    "original": bench_original,
}


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    results = {}
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"imgpipe-bench-{name}-") as folder:
            print(f"== {name}", flush=True)
            results[name] = BENCHMARKS[name](Path(folder))
            print(json.dumps(results[name], indent=2), flush=True)
    if len(results) < len(BENCHMARKS):
        return  # RESULTS.md holds whole runs only
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    o, u, p, i, r = (results[k] for k in ("overhead", "ssh_utilisation", "planning", "imaging", "original"))
    lines = [
        "# imgpipe benchmark results",
        "",
        f"Machine: {machine}. Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| benchmark | figures | ratio | target |",
        "|---|---|---|---|",
        f"| 1. overhead, 50 × 1 s jobs, 4 slots | imgpipe {o['imgpipe_50_s']:.1f} s, xargs -P 4 {o['xargs_50_s']:.1f} s; fixed (before the first job and after the last) {o['startup_s']:.1f} s, per job {o['per_job_s'] * 1000:.0f} ms; with a long-lived `prefect server` instead of the embedded one {o['imgpipe_50_with_server_s']:.1f} s ({o['ratio_with_server']:.2f}) | {o['ratio']:.2f} ({o['ratio_without_startup']:.2f} from first job start to last job end) | ≤ 1.05 |",
    ]
    if "skipped" in u:
        lines.append(f"| 2. slot utilisation, SSH | skipped: {u['skipped']} | | ≥ 0.95 |")
    else:
        lf, ag = u["largest_first"], u["as_given"]
        lines.append(
            f"| 2. slot utilisation, 3 sshd nodes × 2 slots, 60 uneven jobs (0.5–2.5 s, MS bytes in proportion) | "
            f"order = 'largest_first' (default): busy {lf['busy_slot_s']:.1f} slot-s over {lf['dispatch_wall_s']:.1f} s of dispatch "
            f"({lf['command_wall_s']:.1f} s with start-up), {lf['of_ideal']:.2f} of the {lf['ideal_utilisation']:.3f} a dispatcher with no cost between jobs would reach; "
            f"order = 'as_given': {ag['utilisation']:.3f} ({ag['of_ideal']:.2f} of its {ag['ideal_utilisation']:.3f}) | "
            f"{lf['utilisation']:.3f} ({lf['utilisation_incl_startup']:.3f} with start-up) | ≥ 0.95 |"
        )
    lines += [
        f"| 3a. dry run of 10 000 MS paths | {p['ms_10000']['seconds']:.2f} s, {p['ms_10000']['peak_mib']:.0f} MiB | | < 2 s, < 300 MB |",
        f"| 3b. dry run, 1 000 obs_ids × 16 SWs ({p['obs_1000_x_sw_16']['jobs']} jobs) | {p['obs_1000_x_sw_16']['seconds']:.2f} s, {p['obs_1000_x_sw_16']['peak_mib']:.0f} MiB | | < 2 s, < 300 MB |",
        f"| 4. real imaging, the demo MSs | imgpipe {i['imgpipe_s']:.1f} s, wsclean directly {i['direct_s']:.1f} s | {i['ratio']:.2f} | |",
        f"| 5. against the original imgpipe (nenucal {r['nenucal_version']}), 50 × 1 s jobs, 4 slots | imgpipe {r['imgpipe_s']:.1f} s, original {r['original_s']:.1f} s | {r['ratio']:.2f} | |",
        "",
        "Raw figures:",
        "",
        "```json",
        json.dumps(results, indent=2),
        "```",
        "",
    ]
    (REPO / "bench" / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines[:12]))


if __name__ == "__main__":
    main()
