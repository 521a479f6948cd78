"""Shared fixtures: simulated MSs, the real shared MSs, running the real CLI, daemons (helpers in support/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.fake_wsclean import install as install_fake_wsclean
from support.paths import SHARED_DATA
from support.sky import simulate

# Fixtures that start or need a daemon (sshd, SLURM, Dask, a Prefect server or the
# embedded one): tests using them are marked `daemon`, and `make unit` leaves them out.
DAEMON_FIXTURES = {"ssh_nodes", "healthy_nodes", "slurm", "run_imgpipe", "prefect_server", "dask_cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        if DAEMON_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("prefect"):
            item.add_marker(pytest.mark.daemon)


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    """The simulated MSs of support.sky (SW01, SW02: 4 channels; SW03: 3), made once per session."""
    return simulate(tmp_path_factory.mktemp("sim"))


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
            "DO_NOT_TRACK": "1",
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
    from support.sshd_nodes import SSHNodes, sshd_available

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


@pytest.fixture
def fake_wsclean(tmp_path):
    """A fake wsclean that appends 'node pid start|end time' lines to a trace file; returns (path, trace).

    Write a number to ``trace.with_suffix('.seconds')`` to set how long each job runs (default 1 s).
    """
    return install_fake_wsclean(tmp_path)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node SLURM (slurmctld + slurmd + munged); stopped at the end."""
    from support.slurm_cluster import SlurmCluster, slurm_available

    why = slurm_available()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()
