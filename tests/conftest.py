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

# The simulated sky (see imgpipe.simulate): phase centre and one bright source.
RA0, DEC0 = 150.0, 50.0
SOURCE_RA, SOURCE_DEC = 151.0, 50.3

requires_wsclean = pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed (make test installs it)")


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    """Three simulated MSs: SW01, SW02 (4 channels each, different bands) and SW03 (3 channels)."""
    from imgpipe.simulate import PointSource, make_ms

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
    """Run the installed CLI (python -m imgpipe) as a user would; returns CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {
            **os.environ,
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "XDG_CACHE_HOME": str(prefect_home / "cache"),
            "CI": "true",
        }
        full_env.pop("PREFECT_API_URL", None)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "imgpipe", *map(str, args)],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def write_config(tmp_path):
    """Write a config file from text; returns its path."""

    def write(text: str, name: str = "imgpipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
