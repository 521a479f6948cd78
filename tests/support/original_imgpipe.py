"""The original imgpipe (PyPI's nenucal 0.29.2, worker pool libpipe 0.9) as a test oracle.

Installed at test time, never into the repository: a venv of its own with libpipe and
toml (all that nenucal's planning modules import), and nenucal's wheel unpacked beside
it (its other dependencies, nenupy, losoto, ..., are needed only to calibrate). Kept
between runs in ``~/.cache/imgpipe-tests``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

NENUCAL, LIBPIPE = "0.29.2", "0.9"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imgpipe-tests" / f"nenucal-{NENUCAL}"
ORACLE = Path(__file__).with_name("nenucal_oracle.py")


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def original() -> tuple[Path, Path] | str:
    """(python, folder of nenucal's unpacked wheel), or why it cannot be had here."""
    python, unpacked = CACHE / "venv" / "bin" / "python", CACHE / "wheel"
    if (CACHE / "ready").exists():
        return python, unpacked
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(CACHE / "venv")], check=True)
    res = _pip(python, "install", "-q", f"libpipe=={LIBPIPE}", "toml")
    if res.returncode != 0:
        return f"cannot install libpipe {LIBPIPE} from PyPI: {res.stderr.strip().splitlines()[-1:]}"
    res = _pip(python, "download", "-q", "--no-deps", f"nenucal=={NENUCAL}", "-d", str(CACHE / "dist"))
    wheels = sorted((CACHE / "dist").glob(f"nenucal-{NENUCAL}-*.whl"))
    if res.returncode != 0 or not wheels:
        return f"cannot download nenucal {NENUCAL} from PyPI: {res.stderr.strip().splitlines()[-1:]}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(unpacked)
    (CACHE / "ready").touch()
    return python, unpacked


def plan_with_original(cfg: Path, args: list[str], out: Path) -> list[dict]:
    """The WSClean jobs the original imgpipe would run: [{"cmd": str, "host": str | None}]."""
    import json

    found = original()
    assert not isinstance(found, str), found
    python, unpacked = found
    env = {**os.environ, "PYTHONPATH": str(unpacked), "IMGPIPE_ORACLE_OUT": str(out)}
    res = subprocess.run([str(python), str(ORACLE), str(cfg), *args], cwd=cfg.parent, env=env, capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"the original imgpipe failed: {res.stdout[-2000:]} {res.stderr[-3000:]}"
    return json.loads(out.read_text())
