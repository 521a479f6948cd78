"""The local nightly example (make nightly-demo) runs end to end and stops what it started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.markers import requires_wsclean

pytestmark = [requires_wsclean, pytest.mark.prefect]

REPO = Path(__file__).resolve().parents[1]


def test_the_nightly_demo_images_last_night_and_stops_everything(tmp_path):
    if not (REPO / ".venv" / "bin" / "prefect").exists():
        pytest.skip("the nightly demo runs from the repository's .venv (make test makes it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    res = subprocess.run([str(REPO / "examples" / "nightly-demo.sh"), str(tmp_path / "night")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    obs_id = re.search(r"last night's demo observation: (\d{8}_DEMO)", out).group(1)
    assert "Completed" in out  # --watch's final state
    port = int(re.search(r"Prefect server: http://127\.0\.0\.1:(\d+)", out).group(1))
    images = tmp_path / "night" / "images"
    assert sorted(p.name for p in (images / obs_id).glob("*-image.fits")) == ["SW01-image.fits", "SW02-image.fits"]
    check = subprocess.run([sys.executable, "-m", "imgpipe.demo", "check", str(images)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert (images / "report.html").is_file() and f"images:            {images / obs_id}" in out
    assert list((tmp_path / "night" / "scratch").iterdir()) == []  # each job's scratch folder went with it
    with socket.socket() as s:  # the server is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert "stopping the worker and the server" in out
