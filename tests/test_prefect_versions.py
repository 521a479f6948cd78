"""The Prefect versions pyproject.toml declares are the versions tested: the lock's (the
whole suite) and the oldest it allows, here.

The tests that touch Prefect (its internals, flows, servers, workers, deployments, Dask)
run again in a venv with the lower bounds of ``prefect`` and ``prefect-dask``, every
other package from the same lock, kept between runs (``~/.cache/imgpipe-tests``, one
per pair of versions and lock), as the other Pythons' venvs are. imgpipe's other direct
dependencies are the lock's; Prefect's own dependencies are what pip resolves for that
Prefect (an older Prefect caps some of them below the lock's: 3.9.0 wants apprise < 2).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support.paths import REPO

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgpipe-tests"
PREFECT_TESTS = ("test_prefect_internals.py", "test_flow_parameters.py", "test_console_log.py", "test_finished_task_runs.py",
                 "test_embedded_server.py", "test_kept_server.py", "test_interrupt.py", "test_tasks.py", "test_dask.py",
                 "test_deployment.py", "test_outages.py")
"""What Prefect and prefect-dask do for imgpipe: the seam's touch points, flow runs with
the embedded, kept and a real server, node slots through an outage, workers and
deployments, Dask task runs."""

pytestmark = pytest.mark.pythons


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def lower_bound(name: str) -> str:
    """The oldest version pyproject.toml allows for ``name`` (its ``>=`` bound)."""
    for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        if re.match(rf"{re.escape(name)}\s*[><=!~]", requirement):
            found = re.search(r">=\s*([\w.]+)", requirement)
            assert found, f"{requirement}: no lower bound"
            return found[1]
    raise AssertionError(f"{name} is not a dependency")


def test_the_declared_range_stops_before_prefect_4():
    requirement = next(r for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                       if r.startswith("prefect>"))
    assert "<4" in requirement.replace(" ", "")
    assert lower_bound("prefect").startswith("3.")


@pytest.mark.timeout(3600)
def test_the_prefect_tests_pass_with_the_oldest_declared_prefect(tmp_path):
    prefect, dask = lower_bound("prefect"), lower_bound("prefect-dask")
    lock = (REPO / "constraints.txt").read_text()
    venv = CACHE / f"prefect{prefect}-dask{dask}-{hashlib.sha256(lock.encode()).hexdigest()[:12]}"
    if not (venv / "ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        wanted = [d for d in deps["dependencies"] if not re.match(r"prefect(-dask)?\s*[><=]", d)]
        tests = deps["optional-dependencies"]["test"]
        direct = {canonical(re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0]) for d in wanted + tests}
        others = tmp_path / "constraints.txt"  # the lock's pins of imgpipe's other direct dependencies
        others.write_text("".join(line + "\n" for line in lock.splitlines()
                                  if canonical(line.split("==")[0]) in direct))
        res = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(others),
                              f"prefect=={prefect}", f"prefect-dask=={dask}", *wanted, *tests],
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"installing prefect {prefect} and prefect-dask {dask}: {res.stderr[-3000:]}"
        (venv / "ready").touch()
    versions = subprocess.run([str(venv / "bin" / "python"), "-c",
                               "import importlib.metadata as m; print(m.version('prefect'), m.version('prefect-dask'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == [prefect, dask]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
           "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}  # (the tests' `prefect` commands: this venv's)
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not pythons",
         "--basetemp", str(tmp_path / "t"), *[f"tests/{name}" for name in PREFECT_TESTS]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=2400,
    )
    assert res.returncode == 0, f"the Prefect tests with prefect {prefect}, prefect-dask {dask}:\n{res.stdout[-5000:]}"
    assert " passed" in res.stdout.splitlines()[-1]
