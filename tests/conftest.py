"""Shared fixtures: simulated MSs, the real shared MSs, and running the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# The simulated sky (see imgpipe.demo.simulate): phase centre and one bright source.
RA0, DEC0 = 150.0, 50.0
SOURCE_RA, SOURCE_DEC = 151.0, 50.3

# A small real image of the simulated sky, one job per MS (a few seconds per job).
SMALL_IMAGE = """
[wsclean]
name = 'img'
out-dir = 'images/$ms_basename$'
size = '128 128'
scale = '1amin'
niter = 200
mgain = 0.8
j = 1
"""

requires_wsclean = pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed (make test installs it)")


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    """Three simulated MSs: SW01, SW02 (4 channels each, different bands) and SW03 (3 channels)."""
    from imgpipe.demo.simulate import PointSource, make_ms

    folder = tmp_path_factory.mktemp("sim")
    bands = {
        "SW01.MS": [60e6, 61e6, 62e6, 63e6],
        "SW02.MS": [64e6, 65e6, 66e6, 67e6],
        "SW03.MS": [68e6, 69e6, 70e6],
    }
    for i, (name, freqs) in enumerate(bands.items()):
        make_ms(str(folder / name), [PointSource(SOURCE_RA, SOURCE_DEC, 10.0)], RA0, DEC0, freqs, n_ant=8, n_time=32, seed=3 + i)
    return folder


@pytest.fixture
def ms_copy(sim_dir, tmp_path):
    """Copy simulated MSs into this test's folder (WSClean may write into an MS)."""

    def copy(*names: str) -> list[Path]:
        out = []
        for name in names:
            dest = tmp_path / name
            shutil.copytree(sim_dir / name, dest)
            out.append(dest)
        return out

    return copy


@pytest.fixture
def shared_ms(tmp_path):
    """Copy a real telescope MS from ../shared/data (skipped where it is absent)."""

    def copy(name: str) -> Path:
        src = SHARED_DATA / name
        if not src.is_dir():
            pytest.skip(f"{src} is absent (../shared/data ships beside the project, not in a user's clone)")
        dest = tmp_path / name
        shutil.copytree(src, dest, copy_function=shutil.copyfile)  # writable copy of a read-only tree
        for sub in [dest, *dest.rglob("*")]:
            sub.chmod(0o755 if sub.is_dir() else 0o644)
        return dest

    return copy


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    """One PREFECT_HOME for the session: its database is migrated once."""
    return tmp_path_factory.mktemp("prefect_home")


@pytest.fixture
def run_imgpipe(prefect_home, tmp_path):
    """Run the installed CLI (python -m imgpipe) as a user would; returns CompletedProcess.

    ``run_imgpipe.popen(...)`` starts the same command in the background (a Popen).
    """

    def base_env(extra: dict | None = None) -> dict:
        env = {
            **os.environ,
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "XDG_CACHE_HOME": str(prefect_home / "cache"),
            "CI": "true",
        }
        env.pop("PREFECT_API_URL", None)
        env.update(extra or {})
        return env

    def run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "imgpipe", *map(str, args)],
            cwd=cwd or tmp_path,
            env=base_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "imgpipe", *map(str, args)],
            cwd=cwd or tmp_path,
            env=base_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    run.popen = popen
    run.base_env = base_env
    return run


@pytest.fixture
def write_config(tmp_path):
    """Write a config file from text; returns its path."""

    def write(text: str, name: str = "imgpipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def ssh_nodes(tmp_path_factory):
    """Three real sshd "nodes" (node101..node103 on 127.0.0.2..4); stopped at the end."""
    from sshd_nodes import SSHNodes, sshd_available

    if not sshd_available():
        pytest.skip("OpenSSH server is not installed (make test installs openssh-server)")
    nodes = SSHNodes(tmp_path_factory.mktemp("nodes"), 3)
    yield nodes
    nodes.stop()


@pytest.fixture
def healthy_nodes(ssh_nodes):
    """The nodes, each running (a test may kill one; it is restarted afterwards)."""
    yield ssh_nodes
    for node in ssh_nodes.nodes:
        if node.proc is None:
            ssh_nodes.start(node)


FAKE_WSCLEAN = r"""#!/bin/bash
# Stand-in for WSClean (orchestration and fault tests only): records where and when it ran.
# It sleeps for the number of seconds in TRACE.seconds (SSH does not pass the environment on).
if [ $# -eq 0 ]; then exec wsclean; fi
echo "${IMGPIPE_NODE:-local} $$ start $(date +%s.%N) ${@: -1}" >> "TRACE"
echo "fake wsclean on ${IMGPIPE_NODE:-local}: $*"
# "end" only when the sleep ran out: SLURM (proctrack/linuxproc) signals a cancelled step's
# processes one by one, and a sleep killed before its bash must not look like a finished job
sleep "$(cat "TRACE.seconds" 2> /dev/null || echo 1)" || exit
echo "${IMGPIPE_NODE:-local} $$ end $(date +%s.%N) ${@: -1}" >> "TRACE"
"""


@pytest.fixture
def fake_wsclean(tmp_path):
    """A fake wsclean that appends 'node pid start|end time' lines to a trace file; returns (path, trace).

    Write a number to ``trace.with_suffix('.seconds')`` to set how long each job runs (default 1 s).
    """
    trace = tmp_path / "trace"
    path = tmp_path / "fake-wsclean"
    path.write_text(FAKE_WSCLEAN.replace("TRACE", str(trace)))
    path.chmod(0o755)
    return path, trace


def read_trace(trace: Path) -> list[tuple[str, int, str, float]]:
    """(node, pid, 'start'|'end', time) rows of a fake wsclean trace."""
    if not trace.exists():
        return []
    rows = []
    for line in trace.read_text().splitlines():
        node, pid, kind, t = line.split()[:4]
        rows.append((node, int(pid), kind, float(t)))
    return rows


def peak_overlap(rows, node: str | None = None) -> int:
    """Largest number of jobs running at once (on ``node``, or anywhere)."""
    events = sorted((t, 1 if kind == "start" else -1) for n, _, kind, t in rows if node is None or n == node)
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


_LOGS_OF_LAST_RUN = """
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort
with get_client(sync_client=True) as client:
    run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    offset = 0
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200, offset=offset)
        for log in logs:
            print(log.message)
        if len(logs) < 200:
            break
        offset += 200
"""


def logs_of_last_flow_run(env: dict) -> list[str]:
    """Every log message the latest flow run sent to Prefect (read back through its API)."""
    res = subprocess.run([sys.executable, "-c", _LOGS_OF_LAST_RUN], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.splitlines()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM (slurmctld + slurmd + munged); stopped at the end."""
    from slurm_cluster import SlurmCluster, slurm_available

    why = slurm_available()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
