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
   WSClean jobs on localhost, 4 at once;
6. time to first image: one real WSClean job (a demo MS) from the command to WSClean's
   start and from its end to the command's exit, against ``import prefect`` and WSClean
   alone, with the embedded server (new and used PREFECT_HOME), a kept server and a
   running ``prefect server``;
6b. workarounds: the same job with each start/teardown workaround still in imgpipe switched
   off in turn (kept only if it saves >= 1 s: docs/prefect.md);
7. long jobs: 20 fake jobs of 30 s, 4 slots: imgpipe against xargs -P 4 and against the
   original imgpipe;
8. post-processing of a 4096² and an 8192² image (statistics and quick-look): seconds and memory;
9. oversubscription: 8 real WSClean jobs, 2 at a time, imgpipe telling each its cores and
   memory (-j, -abs-mem) against xargs -P 2 running them with WSClean's default threads;
10. memory estimate: 13 real WSClean runs (256² to 4096², 1 to 16 channels, two MSs), measured
   peak / imgpipe's estimate (goal: 0.5 to 1.1);
11. packing: 30 fake jobs holding most of their memory estimate, on 3 sshd nodes in 3, 4 and
   6 GiB memory cgroups: the memory admitted on a node never exceeds its usable memory;
12. scale (bench/scale.py): 5 000 fake jobs on 24 sshd nodes × 4 slots, embedded SQLite
   server and a ``prefect server`` on PostgreSQL, against a 300-job run;
13. MPI (bench/mpi.py): one job as a real wsclean-mp over two sshd nodes against plain WSClean.

``python bench/run.py overhead original`` runs only the benchmarks named.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
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
from mpi import bench_mpi  # noqa: E402 (bench/: the script's own folder)
from scale import bench_scale  # noqa: E402

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
                          "handover_median_s": median(handovers(rows)),
                          "utilisation": utilisation, "utilisation_incl_startup": busy / (slots * wall),
                          "ideal_utilisation": ideal, "of_ideal": utilisation / ideal}
    finally:
        nodes.stop()
    out["utilisation"] = out["largest_first"]["utilisation"]
    return out


def handovers(rows: list[list[str]]) -> list[float]:
    """Per job end (trace rows: time, start/end, node), the seconds until the next job
    starts on that node: what a slot waits between two jobs."""
    import bisect

    gaps = []
    for node in {n for _, _, n in rows}:
        starts = sorted(float(t) for t, kind, n in rows if n == node and kind == "start")
        for end in (float(t) for t, kind, n in rows if n == node and kind == "end"):
            after = bisect.bisect_left(starts, end)
            if after < len(starts):  # (none after the node's last job)
                gaps.append(starts[after] - end)
    return gaps or [float("nan")]


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


# The real WSClean, its start and end recorded (benchmark 6).
TIMED_WSCLEAN = """#!/bin/bash
if [ $# -eq 0 ]; then exec wsclean; fi
echo "$EPOCHREALTIME start" >> TRACE
wsclean "$@"; rc=$?
echo "$EPOCHREALTIME end" >> TRACE
exit $rc
"""


TEARDOWN_SIZES = (1024, 768)
"""Image sizes of benchmark 6's longer job (demo MS: WSClean ~15 s and ~6 s here): the
first for a new PREFECT_HOME, whose server starts in ~10 s, the second for the others."""


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def one_job_demo(tmp: Path) -> tuple[Path, str]:
    """``tmp/SW01.MS`` (a demo MS), a WSClean that writes its start and end to the returned
    trace file, and the demo config with it (``embedded.toml``, ``kept.toml``); returns
    (the trace, the demo config's text)."""
    from imgpipe.demo.simulate import PointSource, make_ms

    make_ms(str(tmp / "SW01.MS"), [PointSource(151.0, 50.3, 10.0)], 150.0, 50.0, [60e6, 61e6, 62e6, 63e6], n_ant=24,
            n_time=120, seed=1)
    trace = tmp / "trace"
    wrapper = tmp / "timed-wsclean"
    wrapper.write_text(TIMED_WSCLEAN.replace("TRACE", str(trace)))
    wrapper.chmod(0o755)
    demo = REPO.joinpath("examples", "demo.toml").read_text().replace("[worker]\n", f"[worker]\nwsclean = '{wrapper}'\n", 1)
    (tmp / "embedded.toml").write_text(demo)
    (tmp / "kept.toml").write_text(demo + "\n[prefect]\nserver = 'kept'\n")
    return trace, demo


def bench_first_image(tmp: Path) -> dict:
    """Command → first WSClean start, WSClean's end → exit, and the whole one-job run, per server kind."""
    from support.prefect_server import PREFECT, free_port

    trace, demo = one_job_demo(tmp)
    # the teardown: a job that ends after imgpipe's own start-up work is done (the
    # image libraries loaded; a new home's server start outlasts a 768² job)
    for size in TEARDOWN_SIZES:
        longer = demo.replace("size = '256 256'", f"size = '{size} {size}'")
        (tmp / f"embedded-{size}.toml").write_text(longer)
        (tmp / f"kept-{size}.toml").write_text(longer + "\n[prefect]\nserver = 'kept'\n")
    ms = str(tmp / "SW01.MS")
    imports = [timed([PY, "-c", "import prefect"])[0] for _ in range(3)]
    plan = tmp / "plan.json"
    subprocess.run([PY, "-m", "imgpipe", str(tmp / "embedded.toml"), ms, "--dry-run", "--plan-json", str(plan)],
                   env=env_for(tmp / "p"), check=True, capture_output=True, cwd=tmp)
    job = json.loads(plan.read_text())["jobs"][0]
    os.makedirs(job["out_dir"], exist_ok=True)
    alone = [timed(job["argv"])[0] for _ in range(3)]

    def one_run(cfg: str, env: dict) -> dict:
        # its own yardstick just before it: this machine's speed drifts by tens of
        # percent over minutes, so each kind's ratio is taken against its own imports
        import_s = timed([PY, "-c", "import prefect"])[0]
        imports.append(import_s)
        trace.unlink(missing_ok=True)
        t0 = time.time()
        timed([PY, "-m", "imgpipe", str(tmp / cfg), ms, "--force"], env=env, cwd=tmp)
        t_exit = time.time()
        (start, _), (end, _) = [line.split() for line in trace.read_text().splitlines()]
        return {"run_s": t_exit - t0, "first_start_s": float(start) - t0, "end_to_exit_s": t_exit - float(end),
                "import_prefect_s": import_s, "end_s": float(end) - t0}

    def teardown(kind: str, cfg: str, size: int, envs: list[dict]) -> None:
        """End → exit of a job that outlasts the start: after the demo's whole run (so
        surely taken over by the flow, the image libraries loaded)."""
        runs = [one_run(f"{cfg}-{size}.toml", env) for env in envs]
        kinds[kind].update(teardown_s=median([r["end_to_exit_s"] for r in runs]), teardown_size=size,
                           teardown_job_end_s=median([r["end_s"] for r in runs]), teardown_runs=len(runs))

    def summary(runs: list[dict]) -> dict:
        out = {key: median([r[key] for r in runs]) for key in runs[0]}
        out.update(runs=len(runs), per_import=out["first_start_s"] / out["import_prefect_s"],
                   per_wsclean=out["run_s"] / median(alone))
        return out

    kinds = {}
    big, mid = TEARDOWN_SIZES
    kinds["embedded_new_home"] = summary([one_run("embedded.toml", env_for(tmp / f"cold{i}")) for i in range(2)])
    teardown("embedded_new_home", "embedded", big, [env_for(tmp / f"cold-long{i}") for i in range(2)])
    warm = env_for(tmp / "warm")
    one_run("embedded.toml", warm)
    kinds["embedded_used_home"] = summary([one_run("embedded.toml", warm) for _ in range(3)])
    teardown("embedded_used_home", "embedded", mid, [warm] * 3)
    kept = {**env_for(tmp / "kept"), "PREFECT_SERVER_API_PORT": str(free_port())}
    try:
        first = one_run("kept.toml", kept)  # starts it
        kinds["kept_server"] = summary([one_run("kept.toml", kept) for _ in range(5)])
        kinds["kept_server"]["first_run_starting_it_s"] = first["run_s"]
        teardown("kept_server", "kept", mid, [kept] * 3)
    finally:
        subprocess.run([PREFECT, "server", "stop"], env=kept, capture_output=True, timeout=120)
    with prefect_server(tmp / "server-home") as server_env:
        one_run("embedded.toml", server_env)
        kinds["running_server"] = summary([one_run("embedded.toml", server_env) for _ in range(5)])
        teardown("running_server", "embedded", mid, [server_env] * 3)
    return {"import_prefect_s": median(imports), "wsclean_alone_s": median(alone), **kinds}


# Each start/teardown workaround switched off in turn (issue 47: a workaround stays only
# if it saves >= 1 s on a one-job run or bounds memory). The switch is made here, in the
# measured process, so the product keeps one way of doing each thing.
WORKAROUND_OFF = {  # variant: (server, what is switched in the measured process)
    "kept_all_on": ("kept", ""),
    "quick_exit_off": ("kept", "import imgpipe.cli.quick_exit as q; q.leave = lambda code: None"),
    "image_warm_up_off": ("kept", "import imgpipe.products.image_stats as s; s.load_in_background = lambda: None"),
    "embedded_all_on": ("embedded", ""),
    "embedded_stop_waited_for": ("embedded", "import imgpipe.orchestration.embedded_server as e\ns = e.EmbeddedServer.stop\n"
                                             "e.EmbeddedServer.stop = lambda self, wait=True: s(self, True)"),
}


def bench_workarounds(tmp: Path, rounds: int = 5) -> dict:
    """The one-job demo run (a real WSClean; a kept server, or the embedded one) with
    every workaround, and with each switched off in turn; rounds interleaved in a
    shuffled order (this machine's speed drifts over minutes). Medians, and what each
    workaround saves against its server's run with all of them."""
    from support.prefect_server import PREFECT, free_port

    trace, _ = one_job_demo(tmp)
    ms = str(tmp / "SW01.MS")
    env = {**env_for(tmp / "home"), "PREFECT_SERVER_API_PORT": str(free_port())}

    def one_run(variant: str) -> dict:
        server, switch = WORKAROUND_OFF[variant]
        trace.unlink(missing_ok=True)
        code = f"{switch}\nfrom imgpipe.cli import main\nmain(prog_name='imgpipe')"
        t0 = time.time()
        timed([PY, "-c", code, str(tmp / f"{server}.toml"), ms, "--force"], env=env, cwd=tmp)
        t_exit = time.time()
        (start, _), (end, _) = [line.split() for line in trace.read_text().splitlines()]
        return {"run_s": t_exit - t0, "first_start_s": float(start) - t0, "end_to_exit_s": t_exit - float(end)}

    runs: dict[str, list[dict]] = {variant: [] for variant in WORKAROUND_OFF}
    try:
        one_run("embedded_all_on")  # the home's database made, its block types registered
        one_run("kept_all_on")  # starts the kept server
        for _ in range(rounds):
            for variant in random.sample(list(WORKAROUND_OFF), len(WORKAROUND_OFF)):
                runs[variant].append(one_run(variant))
    finally:
        subprocess.run([PREFECT, "server", "stop"], env=env, capture_output=True, timeout=120)
    out = {variant: {key: median([r[key] for r in rs]) for key in rs[0]} for variant, rs in runs.items()}
    for variant, figures in out.items():
        spread = sorted(r["run_s"] for r in runs[variant])
        baseline = out[f"{WORKAROUND_OFF[variant][0]}_all_on"]["run_s"]
        figures.update(runs=len(runs[variant]), run_min_s=spread[0], run_max_s=spread[-1], saves_s=figures["run_s"] - baseline)
    return out


def bench_long_jobs(tmp: Path) -> dict:
    """20 fake jobs of 30 s on 4 slots: imgpipe, xargs -P 4 and the original imgpipe."""
    import shutil

    original, version = original_imgpipe()
    (tmp / "bin").mkdir()
    fake = tmp / "bin" / "wsclean"
    fake.write_text(FAKE.replace("exec wsclean", f"exec {shutil.which('wsclean')}").replace("TRACE", str(tmp / "trace")))
    fake.chmod(0o755)
    seconds = tmp / "bin" / "seconds"  # where the fake looks: beside itself
    seconds.mkdir()
    ms = []
    for i in range(20):
        (tmp / "data" / f"obs{i:02d}.MS").mkdir(parents=True)
        ms.append(str(tmp / "data" / f"obs{i:02d}.MS"))
        (seconds / f"obs{i:02d}.MS").write_text("30")
    env_file = tmp / "env.sh"
    env_file.write_text(f"export PATH={shlex.quote(str(tmp / 'bin'))}:$PATH\n")
    worker = f"[worker]\nnodes = 'localhost'\nmax_concurrent = 4\nenv_file = '{env_file}'\n"
    (tmp / "original.toml").write_text(worker + f"[wsclean]\nname = 'img'\nout-dir = '{tmp}/out-original/$ms_basename$'\n")
    (tmp / "imgpipe.toml").write_text(worker + f"[wsclean]\nname = 'img'\nout-dir = '{tmp}/out-imgpipe/$ms_basename$'\n")
    env = {**env_for(tmp / "prefect"), "PATH": f"{tmp / 'bin'}:{os.environ['PATH']}"}
    plan = tmp / "plan.json"
    subprocess.run([PY, "-m", "imgpipe", str(tmp / "imgpipe.toml"), *ms, "--dry-run", "--plan-json", str(plan)], env=env,
                   check=True, capture_output=True)
    lines = "".join(shlex.join(j["argv"]) + "\n" for j in json.loads(plan.read_text())["jobs"])
    for j in json.loads(plan.read_text())["jobs"]:
        os.makedirs(j["out_dir"], exist_ok=True)
    xargs_s, _ = timed(["xargs", "-P", "4", "-L", "1", "-I", "{}", "bash", "-c", "{}"], input=lines, env=env)
    if xargs_s < 140:  # 20 × 30 s on 4 slots: 150 s; less means the fake did not read its 30 s
        raise SystemExit(f"benchmark 7: xargs took {xargs_s:.1f} s for 20 jobs of 30 s on 4 slots: the fake's seconds were not read")
    (seconds / "obs00.MS").write_text("0")  # the database's migrations, once, with a short job
    subprocess.run([PY, "-m", "imgpipe", str(tmp / "imgpipe.toml"), ms[0], "--force"], env=env, capture_output=True)
    (seconds / "obs00.MS").write_text("30")
    (tmp / "trace").unlink(missing_ok=True)
    imgpipe_s, _ = timed([PY, "-m", "imgpipe", str(tmp / "imgpipe.toml"), *ms, "--force"], env=env, cwd=tmp)
    times = [float(line.split()[0]) for line in (tmp / "trace").read_text().splitlines()]
    span = max(times) - min(times)
    kept_s = kept_server_run(tmp, ms, seconds, env)
    original_s, res = timed([str(original), str(tmp / "original.toml"), *ms], env=env, cwd=tmp)
    if "20/20 tasks successful" not in res.stdout:
        raise SystemExit(f"the original imgpipe did not run every job: {res.stdout[-2000:]}")
    return {"xargs_s": xargs_s, "imgpipe_s": imgpipe_s, "ratio": imgpipe_s / xargs_s, "jobs_span_s": span,
            "span_ratio": span / xargs_s, "nenucal_version": version, "original_s": original_s,
            "ratio_to_original": imgpipe_s / original_s, "kept_s": kept_s, "kept_ratio": kept_s / xargs_s,
            "kept_ratio_to_original": kept_s / original_s}


def kept_server_run(tmp: Path, ms: list[str], seconds: Path, env: dict) -> float:
    """Benchmark 7's imgpipe run again with `[prefect] server = 'kept'`, the server started by
    a short run before (as the night before would have): the embedded server's start-up is
    what the default run pays and the original does not."""
    from support.prefect_server import PREFECT, free_port

    (tmp / "kept.toml").write_text((tmp / "imgpipe.toml").read_text() + "\n[prefect]\nserver = 'kept'\n")
    kept = {**env_for(tmp / "kept"), "PATH": env["PATH"], "PREFECT_SERVER_API_PORT": str(free_port())}
    try:
        (seconds / "obs00.MS").write_text("0")
        subprocess.run([PY, "-m", "imgpipe", str(tmp / "kept.toml"), ms[0], "--force"], env=kept, capture_output=True)
        (seconds / "obs00.MS").write_text("30")
        kept_s, _ = timed([PY, "-m", "imgpipe", str(tmp / "kept.toml"), *ms, "--force"], env=kept, cwd=tmp)
    finally:
        subprocess.run([PREFECT, "server", "stop"], env=kept, capture_output=True, timeout=120)
    return kept_s


POSTPROCESS = """
import json, resource, sys, time, tracemalloc
from imgpipe.products import image_stats as ims
ims.load_in_background()  # as a run does while WSClean runs: imports and a first figure not counted
ims._loading[0].join()
png = sys.argv[1][:-5] + ".png"
t1 = time.perf_counter()
st = ims.image_stats(sys.argv[1])
t2 = time.perf_counter()
ims.quicklook_png(sys.argv[1], png, "bench")
t3 = time.perf_counter()
tracemalloc.start()  # (a second pass: tracing slows allocation-heavy drawing, so not timed)
ims.image_stats(sys.argv[1])
ims.quicklook_png(sys.argv[1], png, "bench")
print(json.dumps({"stats_s": t2 - t1, "quicklook_s": t3 - t2, "allocated_peak_mib": tracemalloc.get_traced_memory()[1] / 2**20,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak": st.peak}))
"""


def bench_postprocess(tmp: Path) -> dict:
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    out = {}
    for n in (4096, 8192):
        path = tmp / f"img{n}-image.fits"
        wcs = WCS(naxis=2)
        wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.cdelt, wcs.wcs.crpix = ["RA---SIN", "DEC--SIN"], [150, 50], [-1e-3, 1e-3], [n / 2, n / 2]
        data = np.random.default_rng(1).standard_normal((1, 1, n, n), dtype=np.float32)
        data *= 1e-3
        data[0, 0, n // 3, n // 4] = 5.0
        fits.PrimaryHDU(data, wcs.to_header()).writeto(path)
        del data
        res = subprocess.run([PY, "-c", POSTPROCESS, str(path)], capture_output=True, text=True, check=True)
        out[f"{n}"] = {**json.loads(res.stdout.splitlines()[-1]), "image_mib": path.stat().st_size / 2**20}
        path.unlink()
    return out


OVERSUB_WSCLEAN = """[worker]
max_concurrent = 2
[wsclean]
name = 'img'
out-dir = 'out-$ms_basename$'
size = '1024 1024'
scale = '20asec'
niter = 3000
mgain = 0.8
data-column = 'DATA'
no-update-model-required = true
"""


def strip_share(argv: list[str]) -> list[str]:
    """argv without the -j and -abs-mem imgpipe added: WSClean's own defaults (every core, all memory)."""
    out, skip = [], 0
    for word in argv:
        if skip:
            skip -= 1
        elif word in ("-j", "-abs-mem"):
            skip = 1
        else:
            out.append(word)
    return out


def xargs_wall(commands: list[list[str]], slots: int, cwd: Path) -> float:
    lines = "\n".join(shlex.join(c) for c in commands) + "\n"
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-d", "\\n", "-P", str(slots), "-n", "1", "bash", "-c"], input=lines, text=True,
                   check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_oversubscription(tmp: Path) -> dict:
    """8 real WSClean jobs, 2 at a time: imgpipe (each told -j and its share) against the
    same commands through xargs -P 2 with WSClean's default threads, and with imgpipe's -j."""
    from imgpipe.demo.simulate import PointSource, make_ms

    mss = []
    for i in range(8):
        ms = tmp / f"S{i}.MS"
        make_ms(str(ms), [PointSource(150.3, 50.2, 5.0)], 150.0, 50.0, [60e6 + 1e6 * c for c in range(4)], n_ant=24,
                n_time=120, seed=10 + i)
        mss.append(str(ms))
    cfg = tmp / "o.toml"
    cfg.write_text(OVERSUB_WSCLEAN)
    env = env_for(tmp / "prefect")
    plan = tmp / "plan.json"
    subprocess.run([PY, "-m", "imgpipe", str(cfg), *mss, "--dry-run", "--plan-json", str(plan)], env=env, check=True,
                   capture_output=True, cwd=tmp)
    jobs = json.loads(plan.read_text())["jobs"]
    for j in jobs:
        os.makedirs(j["out_dir"], exist_ok=True)
    given = [j["argv"] for j in jobs]
    default = [strip_share(a) for a in given]
    subprocess.run([PY, "-m", "imgpipe", str(cfg), mss[0], "--force"], env=env, capture_output=True, cwd=tmp)  # migrations
    imgpipe_s, _ = timed([PY, "-m", "imgpipe", str(cfg), *mss, "--force"], env=env, cwd=tmp)
    xargs_default = xargs_wall(default, 2, tmp)
    xargs_given = xargs_wall(given, 2, tmp)
    return {"jobs": len(jobs), "cores": os.cpu_count(), "resources": jobs[0]["resources"],
            "imgpipe_s": imgpipe_s, "xargs_default_threads_s": xargs_default, "xargs_with_imgpipe_share_s": xargs_given,
            "ratio": imgpipe_s / xargs_default, "share_ratio": xargs_given / xargs_default}


ESTIMATE_RUNS = (  # (MS, image size, channels-out, [wsclean] settings): none among the runs the estimate was fitted on
    ("mid", 256, 1, {}), ("mid", 512, 2, {}), ("mid", 768, 8, {}), ("mid", 1024, 1, {}), ("mid", 1024, 16, {}),
    ("mid", 1536, 4, {}), ("mid", 2048, 2, {}), ("mid", 3072, 1, {}), ("mid", 4096, 2, {}), ("tiny", 512, 16, {}),
    ("tiny", 2048, 8, {}), ("tiny", 4096, 1, {}), ("tiny", 3072, 4, {}),
    # deconvolution settings (docs/resources.md has the runs their terms were fitted on)
    ("mid", 3072, 2, {"niter": 0}), ("tiny", 1024, 8, {"niter": 0}), ("mid", 512, 1, {"niter": 0}),
    ("mid", 1536, 2, {"multiscale": True}), ("tiny", 768, 8, {"multiscale": True}),
    ("mid", 1536, 4, {"parallel-gridding": 2}), ("tiny", 2048, 1, {"parallel-gridding": 3}),
    ("tiny", 1024, 8, {"parallel-deconvolution": 512}), ("mid", 3072, 1, {"parallel-deconvolution": 1024}),
    ("mid", 768, 4, {"pol": "IQUV", "join-polarizations": True}), ("mid", 1536, 4, {"use-wgridder": True}),
)


def bench_memory_estimate(tmp: Path) -> dict:
    """Measured WSClean peak / imgpipe's memory estimate, on runs the estimate was not fitted
    on (other MSs, sizes, channel counts and deconvolution settings). Each run's settings go
    both to WSClean (as the plan's argv would) and to the estimate. The peak comes from GNU
    time's wait4 of WSClean (a process started by this big Python would carry its peak, see
    backends/local)."""
    from imgpipe.core.memory_estimate import estimate_mib, image_mib
    from imgpipe.core.wsclean_argv import build_argv, option_items
    from imgpipe.demo.simulate import PointSource, make_ms
    from imgpipe.facts.ms_sizes import ms_bytes

    mss = {}
    for tag, n_ant, n_time in (("mid", 24, 200), ("tiny", 12, 40)):
        mss[tag] = str(tmp / f"{tag}.MS")
        make_ms(mss[tag], [PointSource(150.3, 50.2, 5.0)], 150.0, 50.0, [60e6 + 0.2e6 * c for c in range(16)],
                n_ant=n_ant, n_time=n_time, seed=5)
    runs = []
    for tag, size, chans, settings in ESTIMATE_RUNS:
        name = tmp / "out" / f"{tag}-{size}-{chans}"
        name.parent.mkdir(exist_ok=True)
        options = {"size": f"{size} {size}", "scale": f"{round(20 * 1024 / size)}asec", "niter": 1000, "mgain": 0.8,
                   "auto-threshold": 3, "pol": "I", "data-column": "DATA", "no-update-model-required": True,
                   **({"channels-out": chans, "join-channels": True} if chans > 1 else {}), **settings}
        argv = build_argv(["wsclean"], str(name), options.items(), [mss[tag]])
        res = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"wsclean failed: {shlex.join(argv)}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        peak = int(res.stderr.strip().splitlines()[-1]) / 1024
        est = estimate_mib(image_mib(options, chans), ms_bytes(mss[tag]))
        runs.append({"ms": tag, "ms_mib": ms_bytes(mss[tag]) / 2**20, "size": size, "channels": chans,
                     "settings": " ".join(item for k, v in settings.items() for item in option_items(k, v)),
                     "peak_mib": peak, "estimate_mib": est, "peak_per_estimate": peak / est})
        for f in name.parent.iterdir():
            f.unlink()
    ratios = [r["peak_per_estimate"] for r in runs]
    return {"runs": runs, "min": min(ratios), "max": max(ratios),
            "met": max(ratios) <= 1.1 and min(ratios) >= 0.5}


# A fake WSClean that holds memory: mem/<MS name> MiB for seconds/<MS name> s (python3),
# between two trace lines that name its node, its MS and the memory it was admitted with.
HUNGRY = """#!/bin/bash
if [ $# -eq 0 ]; then exec wsclean; fi
last=${@: -1}; ms=${last##*/}; dir=${0%/*}
read -r mem < "$dir/mem/$ms"; read -r est < "$dir/est/$ms"; read -r s < "$dir/seconds/$ms"
echo "$EPOCHREALTIME start ${IMGPIPE_NODE:-local} $ms $est" >> TRACE
python3 -c "import time; b = bytearray($mem << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep($s)" || exit
echo "$EPOCHREALTIME end ${IMGPIPE_NODE:-local} $ms $est" >> TRACE
"""
PACKING_NODES_MIB = (3072, 4096, 6144)
"""The memory of each of the three sshd nodes (their cgroups' limits)."""


def bench_packing(tmp: Path) -> dict:
    """30 fake jobs that each hold ~0.85 of their memory estimate (300 MiB to 1.5 GiB), 4 slots
    per node, on 3 sshd nodes in memory cgroups of 3, 4 and 6 GiB: from the trace, the sum of
    the estimates of the jobs running on a node never exceeds its usable memory, and how much
    of that memory was in use (memory-time of the jobs / usable memory × the run's span)."""
    from imgpipe.core.job_resources import Capacity, usable_mb
    from imgpipe.core.memory_estimate import FIXED_MIB, VISIBILITY_FRACTION, estimate_mib, image_mib

    from support.cgroups import memory_cgroup
    from support.sshd_nodes import SSHNodes, sshd_available

    if not sshd_available():
        return {"skipped": "openssh-server is not installed"}
    with contextlib.ExitStack() as stack:
        prefixes = [stack.enter_context(memory_cgroup(mib)) for mib in PACKING_NODES_MIB]
        if any(prefix is None for prefix in prefixes):
            return {"skipped": "cannot make memory cgroups here"}
        (tmp / "nodes").mkdir()
        nodes = SSHNodes(tmp / "nodes", 3, prefixes=prefixes)
        stack.callback(nodes.stop)
        fake = tmp / "hungry-wsclean"
        fake.write_text(HUNGRY.replace("TRACE", str(tmp / "trace")))
        fake.chmod(0o755)
        for sub in ("mem", "est", "seconds"):
            (tmp / sub).mkdir()
        rng = random.Random(11)
        ms, image = [], image_mib({"size": "64 64"}, 1)
        for i in range(30):
            want = rng.uniform(300, 1500)  # the estimate wanted, MiB: its MS's main table is sized for it
            path = tmp / "data" / f"obs{i:02d}.MS"
            path.mkdir(parents=True)
            with open(path / "table.f0", "wb") as f:
                f.truncate(int((want - FIXED_MIB - image) / VISIBILITY_FRACTION * 2**20))  # (sparse)
            est = estimate_mib(image, (path / "table.f0").stat().st_size)
            (tmp / "est" / path.name).write_text(f"{int(est)}\n")  # (as the scheduler counts it)
            (tmp / "mem" / path.name).write_text(f"{int(est * 0.85 - 15)}\n")  # (python itself: ~15 MiB)
            (tmp / "seconds" / path.name).write_text(f"{rng.uniform(1.5, 3.0):.2f}\n")
            ms.append(str(path))
        cfg = tmp / "packing.toml"
        cfg.write_text(f"[worker]\nnodes = 'node[101-103]'\nmax_concurrent = 4\nssh_config = '{nodes.ssh_config}'\n"
                       f"wsclean = '{fake}'\n[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp}/out'\nsize = '64 64'\n")
        env = env_for(tmp / "prefect")
        wall, res = timed([PY, "-m", "imgpipe", str(cfg), *ms], env=env)
    rows = [line.split() for line in (tmp / "trace").read_text().splitlines()]
    usable = {f"node{101 + i}": usable_mb(Capacity(1, mib)) for i, mib in enumerate(PACKING_NODES_MIB)}
    span = max(float(r[0]) for r in rows) - min(float(r[0]) for r in rows)
    out = {"jobs": len(ms), "ended": sum(r[1] == "end" for r in rows), "wall_s": wall, "nodes": {}}
    for node, mem in usable.items():
        events = sorted((float(t), kind == "start", float(est)) for t, kind, n, _, est in rows if n == node)
        held = high = memory_time = 0.0
        last = None
        for t, starts, est in sorted(events, key=lambda e: (e[0], e[1])):
            if last is not None:
                memory_time += held * (t - last)
            held += est if starts else -est
            high, last = max(high, held), t
        out["nodes"][node] = {"usable_mib": mem, "jobs": sum(1 for e in events if e[1]), "most_admitted_mib": high,
                              "within": high <= mem, "memory_utilisation": memory_time / (mem * span) if span else None}
    out["never_over"] = all(n["within"] for n in out["nodes"].values())
    out["failed"] = res.stdout.count("FAILED")
    return out


BENCHMARKS = {
    "overhead": bench_overhead,
    "ssh_utilisation": bench_ssh_utilisation,
    "planning": bench_planning,
    "imaging": bench_imaging,
    "original": bench_original,
    "first_image": bench_first_image,
    "workarounds": bench_workarounds,
    "long_jobs": bench_long_jobs,
    "postprocess": bench_postprocess,
    "oversubscription": bench_oversubscription,
    "memory_estimate": bench_memory_estimate,
    "packing": bench_packing,
    "scale": lambda tmp: bench_scale(tmp, PY, fake_wsclean, env_for, greedy_makespan),
    "mpi": bench_mpi,
}


def earlier_results() -> dict | None:
    """The raw figures of bench/RESULTS.md (its last JSON block), with when they were
    written (older files say it in their first lines only); None without such a block.
    Whether they hold a whole run is the caller's to check."""
    path = REPO / "bench" / "RESULTS.md"
    if not path.exists():
        return None
    text = path.read_text()
    try:
        earlier = json.loads(text.rsplit("```json", 1)[1].split("```", 1)[0])
    except (IndexError, ValueError):
        return None
    if "written" not in earlier:
        when = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", text)
        yardstick = re.search(r"in this Python\): ([\d.]+) s", text)
        if not (when and yardstick):
            return None
        earlier["written"] = {"utc": when[1], "yardstick_s": float(yardstick[1])}
    return earlier


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    # imgpipe's modules as an installed copy has them, byte-compiled (make setup does it
    # too): where PYTHONDONTWRITEBYTECODE is set, stale ones would be compiled on every run
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "imgpipe")], check=True)
    results = {}
    t0 = time.perf_counter()
    sum(range(30_000_000))
    speed = time.perf_counter() - t0  # a CPU yardstick: compare runs of different days by it
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"imgpipe-bench-{name}-") as folder:
            print(f"== {name}", flush=True)
            results[name] = BENCHMARKS[name](Path(folder))
            print(json.dumps(results[name], indent=2), flush=True)
    written = {"utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "yardstick_s": speed}
    if len(results) < len(BENCHMARKS):
        earlier = earlier_results()
        if earlier is None or set(BENCHMARKS) - set(earlier) - set(results):
            return  # RESULTS.md holds whole runs, or benchmarks re-measured on top of one
        remeasured = {**earlier.get("remeasured", {}), **dict.fromkeys(results, written)}
        written = earlier["written"]
        results = {**earlier, **results, "remeasured": remeasured}
    results["written"] = written
    text = render(results)
    (REPO / "bench" / "RESULTS.md").write_text(text)
    print("\n".join(text.splitlines()[:40]))


def render(results: dict) -> str:
    """bench/RESULTS.md from the raw figures of a whole run (and benchmarks re-measured on it)."""
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}"
    o, u, p, i, r = (results[k] for k in ("overhead", "ssh_utilisation", "planning", "imaging", "original"))
    f, lj, pp = results["first_image"], results["long_jobs"], results["postprocess"]  # (9: below)
    lines = [
        "# imgpipe benchmark results",
        "",
        f"Machine: {machine}. Written by `make bench` on {results['written']['utc']}. "
        f"CPU yardstick (`sum(range(30_000_000))` in this Python): {results['written']['yardstick_s']:.2f} s; times "
        "from runs whose yardstick differs are not comparable, ratios within one run are."
        + "".join(f" Benchmark `{name}` re-measured alone (`python bench/run.py {name}`) on {when['utc']} "
                  f"(yardstick {when['yardstick_s']:.2f} s): its own ratios stand, its times against the others' do not."
                  for name, when in results.get("remeasured", {}).items()),
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
            f"({lf['command_wall_s']:.1f} s with start-up), {lf['of_ideal']:.2f} of the {lf['ideal_utilisation']:.3f} a dispatcher with no cost between jobs would reach"
            + (f", a job's end → the next start on its node {lf['handover_median_s'] * 1000:.0f} ms (median)" if "handover_median_s" in lf else "")
            + "; "
            f"order = 'as_given': {ag['utilisation']:.3f} ({ag['of_ideal']:.2f} of its {ag['ideal_utilisation']:.3f}) | "
            f"{lf['utilisation']:.3f} ({lf['utilisation_incl_startup']:.3f} with start-up) | ≥ 0.95 |"
        )
    lines += [
        f"| 3a. dry run of 10 000 MS paths | {p['ms_10000']['seconds']:.2f} s, {p['ms_10000']['peak_mib']:.0f} MiB | | < 2 s, < 300 MB |",
        f"| 3b. dry run, 1 000 obs_ids × 16 SWs ({p['obs_1000_x_sw_16']['jobs']} jobs) | {p['obs_1000_x_sw_16']['seconds']:.2f} s, {p['obs_1000_x_sw_16']['peak_mib']:.0f} MiB | | < 2 s, < 300 MB |",
        f"| 4. real imaging, the demo MSs | imgpipe {i['imgpipe_s']:.1f} s, wsclean directly {i['direct_s']:.1f} s | {i['ratio']:.2f} | |",
        f"| 5. against the original imgpipe (nenucal {r['nenucal_version']}), 50 × 1 s jobs, 4 slots | imgpipe {r['imgpipe_s']:.1f} s, original {r['original_s']:.1f} s | {r['ratio']:.2f} | |",
        "",
        f"Time to first image (benchmark 6): one demo-MS job; `import prefect` {f['import_prefect_s']:.2f} s "
        f"(timed before every run; each kind's ratio is against its own runs' imports), "
        f"WSClean alone {f['wsclean_alone_s']:.2f} s; medians.",
        "",
        "| server | command → first WSClean start | ÷ import prefect | WSClean end → exit | whole run | ÷ WSClean alone "
        "| end → exit, a longer job (the teardown) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, label, goal in (("embedded_new_home", "embedded, new PREFECT_HOME", "≤ 2"), ("embedded_used_home", "embedded, used PREFECT_HOME", "≤ 2"),
                              ("kept_server", "kept (`[prefect] server = 'kept'`)", "≤ 1.3"),
                              ("running_server", "a running `prefect server` (on 127.0.0.1)", "≤ 1.3")):
        k = f.get(kind)
        if k is None:
            continue
        if "teardown_s" in k:
            outlasted = "" if k["teardown_job_end_s"] > k["run_s"] else "; **the job ended before the demo's run did**"
            teardown = (f"{k['teardown_s']:.2f} s (goal ≤ 0.5; {k['teardown_size']}² job, ended "
                        f"{k['teardown_job_end_s']:.1f} s after the command{outlasted})")
        else:
            teardown = "not measured"
        lines.append(f"| {label} | {k['first_start_s']:.2f} s | {k['per_import']:.2f} (goal {goal}) | {k['end_to_exit_s']:.2f} s | "
                     f"{k['run_s']:.1f} s | {k['per_wsclean']:.1f} | {teardown} |")
    lines += ["", "Every job starts as a task run of its flow run: once Prefect is imported and the flow run is "
              "made, and with the embedded server once that server answers (docs/prefect.md). The last column times "
              "the teardown itself: the same run with a longer job, ending after imgpipe's own start-up work is done."]
    lines += [
        "",
        f"Long jobs (benchmark 7): 20 × 30 s, 4 slots: imgpipe {lj['imgpipe_s']:.1f} s, xargs -P 4 {lj['xargs_s']:.1f} s: "
        f"**{lj['ratio']:.3f}** (goal ≤ 1.05; {lj['span_ratio']:.3f} over the jobs' span); the original imgpipe (nenucal "
        f"{lj['nenucal_version']}) {lj['original_s']:.1f} s: imgpipe / original **{lj['ratio_to_original']:.3f}** (goal ≤ 1)"
        + (f"; with a kept server (`[prefect] server = 'kept'`, started by an earlier run) {lj['kept_s']:.1f} s: "
           f"{lj['kept_ratio']:.3f} of xargs, **{lj['kept_ratio_to_original']:.3f}** of the original." if "kept_s" in lj else "."),
        "",
        "Post-processing (benchmark 8), statistics and quick-look of one image (libraries loaded and a first figure drawn, as a run does while WSClean runs; memory from a second pass, traced):",
        "",
        "| image | statistics | quick-look | allocated at most | peak RSS (the image's pages, mapped from its file, count in it) |",
        "|---|---|---|---|---|",
    ]
    for n, q in pp.items():
        lines.append(f"| {n}² ({q['image_mib']:.0f} MiB) | {q['stats_s']:.2f} s | {q['quicklook_s']:.2f} s | {q['allocated_peak_mib']:.0f} MiB | {q['peak_rss_mib']:.0f} MiB |")
    ov = results["oversubscription"]
    lines += [
        "",
        f"Oversubscription (benchmark 9): {ov['jobs']} real WSClean jobs (1024², 3000 iterations), 2 at a time on "
        f"{ov['cores']} cores; imgpipe gave each {ov['resources']['cores']} core(s) and {ov['resources']['mem_mb'] / 1024:.1f} GiB: "
        f"imgpipe {ov['imgpipe_s']:.1f} s, xargs -P 2 with WSClean's default threads {ov['xargs_default_threads_s']:.1f} s "
        f"(**{ov['ratio']:.2f}**), xargs -P 2 with imgpipe's -j/-abs-mem {ov['xargs_with_imgpipe_share_s']:.1f} s "
        f"(**{ov['share_ratio']:.2f}**: the share alone).",
    ]
    me = results["memory_estimate"]
    lines += [
        "",
        f"Memory estimate (benchmark 10), measured WSClean peak / imgpipe's estimate on {len(me['runs'])} runs the "
        f"estimate was not fitted on: {me['min']:.2f} to {me['max']:.2f} (goal 0.5 to 1.1: "
        f"{'met' if me['met'] else 'NOT met'}).",
        "",
        "| MS (main table) | size | channels-out | settings (besides `-niter 1000 -mgain 0.8 -auto-threshold 3`) | peak | estimate | peak / estimate |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in me["runs"]:
        lines.append(f"| {run['ms']} ({run['ms_mib']:.0f} MiB) | {run['size']}² | {run['channels']} | "
                     f"{run.get('settings', '')} | {run['peak_mib']:.0f} MiB | "
                     f"{run['estimate_mib']:.0f} MiB | {run['peak_per_estimate']:.2f} |")
    pk = results["packing"]
    if "skipped" in pk:
        lines += ["", f"Packing (benchmark 11): skipped: {pk['skipped']}."]
    else:
        per_node = ", ".join(f"{n}: {v['jobs']} jobs, at most {v['most_admitted_mib']:.0f} of {v['usable_mib']} MiB usable "
                             f"admitted at once, memory in use {v['memory_utilisation']:.0%}" for n, v in pk["nodes"].items())
        lines += ["", f"Packing (benchmark 11): {pk['jobs']} jobs of 0.3 to 1.5 GiB (estimates), 3 sshd nodes in 3/4/6 GiB "
                      f"cgroups, 4 slots each; {pk['ended']} ended, {pk['failed']} failed, in {pk['wall_s']:.1f} s. {per_node}. "
                      f"Never over a node's usable memory: **{'yes' if pk['never_over'] else 'NO'}**."]
    lines += render_workarounds(results.get("workarounds"))
    lines += render_scale(results.get("scale")) + render_mpi(results.get("mpi"))
    lines += [
        "",
        "Raw figures:",
        "",
        "```json",
        json.dumps(results, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


REMOVED_WORKAROUNDS = (
    "Removed after this benchmark measured them (2026-12-08, 5 interleaved runs each, medians of the whole run): "
    "flow-run heartbeats off for command-line runs (saved 0.60 s), the flow's parameters recorded without "
    "Prefect's encoder (0.32 s), block types not re-hashed at each embedded server start (0.21 s), a warm-up "
    "request to a new server (-0.06 s): each under the 1 s a workaround must save (docs/prefect.md)."
)


def render_workarounds(w: dict | None) -> list[str]:
    """Benchmark 6b: what each start/teardown workaround still in imgpipe saves."""
    if w is None:
        return []
    lines = ["", "Workarounds (benchmark 6b): the one-job demo (real WSClean) with every workaround, and with one "
             "switched off; interleaved runs, medians (min–max of the whole run).", "",
             "| variant | whole run | command → first start | WSClean end → exit | saves |", "|---|---|---|---|---|"]
    for name, v in w.items():
        lines.append(f"| {name.replace('_', ' ')} | {v['run_s']:.2f} s ({v['run_min_s']:.2f}–{v['run_max_s']:.2f}) | "
                     f"{v['first_start_s']:.2f} s | {v['end_to_exit_s']:.2f} s | {v['saves_s']:+.2f} s |")
    return [*lines, "", REMOVED_WORKAROUNDS]


def render_scale(sc: dict | None) -> list[str]:
    if sc is None:
        return []
    if "skipped" in sc:
        return ["", f"Scale (benchmark 12): skipped: {sc['skipped']}."]
    lines = ["", f"Scale (benchmark 12): {sc['jobs']} fake jobs (0.5–3 s, mean {sc['mean_job_s']:.2f} s, largest first) on "
                 f"{sc['nodes']} sshd nodes × {sc['slots_per_node']} slots (a dispatcher with no cost between jobs would reach "
                 f"{sc['ideal_utilisation']:.3f}); the soak's size ({sc['soak']['jobs']} jobs) on the same nodes for memory.",
             "",
             "| server | jobs started / s (sustained) | slot utilisation | run | imgpipe peak RSS (with the embedded server) | imgpipe CPU / job | server CPU / task run | database after | flow-run page lists its task runs (cold, warm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, label in (("soak", "embedded (SQLite), 300 jobs"), ("sqlite", "embedded (SQLite)"), ("postgresql", "`prefect server` on PostgreSQL")):
        r = sc.get(key, {})
        if "skipped" in r or not r:
            lines.append(f"| {label} | skipped: {r.get('skipped', 'not run')} | | | | | | | |")
            continue
        own_cpu = r["imgpipe_cpu_s"] - (r["server_cpu_s"] or 0.0) if key != "postgresql" else r["imgpipe_cpu_s"]
        server = f"{r['server_cpu_per_task_run_ms']:.0f} ms" + (f" + PostgreSQL {r['postgres_cpu_per_task_run_ms']:.0f} ms" if "postgres_cpu_per_task_run_ms" in r else "")
        ui = f"{r['ui_task_list_s']:.1f} s, {r['ui_task_list_again_s']:.1f} s" if "ui_task_list_s" in r else ""
        with_children = f" ({r['peak_rss_with_children_mib']:.0f} MiB)" if key != "postgresql" and "peak_rss_with_children_mib" in r else ""
        lines.append(f"| {label} | {r['starts_per_s']:.1f} | {r['utilisation']:.3f} | {r['command_wall_s']:.0f} s | {r['peak_rss_mib']:.0f} MiB{with_children} | "
                     f"{1000 * own_cpu / r['jobs']:.0f} ms | {server} | {r['db_mib']:.0f} MiB | {ui} |")
    lines += ["", f"imgpipe's own peak RSS (its VmHWM; wait4's figure counts the embedded server, a child), {sc['jobs']} jobs "
                  f"against {sc['soak']['jobs']}: **{sc['rss_growth_mib']:+.0f} MiB** (goal < 100 MiB)."]
    return lines


def render_mpi(m: dict | None) -> list[str]:
    if m is None:
        return []
    if "skipped" in m:
        return ["", f"MPI (benchmark 13): skipped: {m['skipped']}."]
    return ["", f"MPI (benchmark 13): one job ({m['ms']}; `{m['options']}`): wsclean-mp, 2 ranks × `-j 1` over two sshd "
                f"nodes on this one machine, {m['mpi_2x1_s']:.1f} s; plain WSClean `-j 2` {m['plain_j2_s']:.1f} s "
                f"(**{m['mpi_per_plain_j2']:.2f}**), `-j 1` {m['plain_j1_s']:.1f} s ({m['mpi_per_plain_j1']:.2f}). Both "
                "nodes share the same 2 cores: this is MPI's cost, not the speed-up separate nodes give."]


if __name__ == "__main__":
    main()
