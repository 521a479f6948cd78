"""The Pythons imgpipe supports are the ones tested: the unit tests under 3.12 and 3.13 too.

The whole suite runs under the Python of ``.venv`` (3.11, Debian 12's); here the tests
that need no daemon run again under each other supported Python found on this machine
(``python3.X`` on PATH, or pyenv's), in a venv installed from the same lock and kept
between runs (``~/.cache/imgpipe-tests``, one per Python and lock).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from support.paths import REPO

OTHER_PYTHONS = ("3.12", "3.13")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgpipe-tests"

pytestmark = pytest.mark.pythons


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` that runs (a pyenv shim on PATH may only say it is not set)."""
    candidates = sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python{version}")))[::-1]
    candidates += [p for p in [shutil.which(f"python{version}")] if p]
    for python in candidates:
        if subprocess.run([python, "-c", "import venv"], capture_output=True).returncode == 0:
            return python
    return None


def test_requires_python_names_the_tested_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.14"
    tested = {f"{sys.version_info.major}.{sys.version_info.minor}", *OTHER_PYTHONS}
    assert {c.rsplit(" :: ", 1)[-1] for c in project["classifiers"] if c.startswith("Programming Language :: Python :: 3.")} == tested


@pytest.mark.parametrize("version", OTHER_PYTHONS)
def test_the_unit_tests_pass_under(version, tmp_path):
    python = find_python(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine (pyenv or PATH)")
    lock = (REPO / "constraints.txt").read_bytes()
    venv = CACHE / f"py{version}-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (venv / "ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt")]
        deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
        res = subprocess.run([*pip, *deps["dependencies"], *deps["optional-dependencies"]["test"]],
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"installing the lock under Python {version}: {res.stderr[-3000:]}"
        (venv / "ready").touch()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not daemon and not pythons",
         "--basetemp", str(tmp_path / "t")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, f"unit tests under Python {version}:\n{res.stdout[-4000:]}"
    assert " passed" in res.stdout.splitlines()[-1]
