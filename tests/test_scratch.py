"""Per-job scratch folders ([worker] temp_dir) on real sshd nodes: made, used, always removed.

A job's folder is made on its node before WSClean starts and removed however the job
ends (ok, failed, timed out, Ctrl-C); a folder left by a run killed outright (its
wrapper too) is removed by the next job that starts beside it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.fake_wsclean import read_trace
from support.markers import requires_wsclean
from support.processes import wait_for

pytestmark = [requires_wsclean, pytest.mark.prefect]


def config(nodes, tmp_path: Path, fake: Path, scratch: Path, **worker) -> Path:
    lines = {"nodes": "'node101'", "ssh_config": f"'{nodes.ssh_config}'", "wsclean": f"'{fake}'",
             "temp_dir": f"'{scratch}'", "temp_min_free": "'1MB'", **worker}
    path = tmp_path / "img.toml"
    path.write_text("[worker]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
                    + f"[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp_path}/out'\n")
    return path


def ms_dir(tmp_path: Path, name: str) -> str:
    path = tmp_path / "data" / name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def folders(scratch: Path) -> list[str]:
    return sorted(p.name for p in scratch.iterdir()) if scratch.is_dir() else []


def test_a_jobs_scratch_folder_is_made_used_and_removed_however_it_ends(healthy_nodes, run_imgpipe, fake_wsclean,
                                                                       tmp_path):
    fake, trace = fake_wsclean
    scratch = tmp_path / "scratch"
    cfg = config(healthy_nodes, tmp_path, fake, scratch)

    # ok: the folder existed while the job ran (the fake wrote its reorder file there)
    res = run_imgpipe(cfg, ms_dir(tmp_path, "ok.MS"))
    assert res.returncode == 0, res.stderr[-3000:]
    (used,) = trace.with_suffix(".temp").read_text().split()
    assert Path(used).parent == scratch and Path(used).name.startswith("imgpipe-ok.MS-")
    assert f"imgpipe: scratch folder {used} on " in (tmp_path / "out" / "ok.MS.log").read_text()
    assert folders(scratch) == []

    # failed
    trace.with_suffix(".exit").write_text("3")
    res = run_imgpipe(cfg, ms_dir(tmp_path, "bad.MS"))
    assert res.returncode == 1 and "FAILED" in res.stdout
    assert folders(scratch) == []
    trace.with_suffix(".exit").unlink()

    # timed out
    trace.with_suffix(".seconds").write_text("60")
    res = run_imgpipe(config(healthy_nodes, tmp_path, fake, scratch, max_time="2", kill_grace="1"), ms_dir(tmp_path, "slow.MS"))
    assert res.returncode == 1 and "TIMED-OUT" in res.stdout, res.stdout[-2000:]
    assert folders(scratch) == []

    # Ctrl-C
    runs_before = len(read_trace(trace))
    proc = run_imgpipe.popen(cfg, ms_dir(tmp_path, "stopped.MS"))
    assert wait_for(lambda: len(read_trace(trace)) > runs_before, 120), proc.stderr
    assert folders(scratch) != []
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert wait_for(lambda: folders(scratch) == [], 15), folders(scratch)


def test_a_folder_left_by_a_killed_run_is_removed_by_the_next_job(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    scratch = tmp_path / "scratch"
    cfg = config(healthy_nodes, tmp_path, fake, scratch)
    trace.with_suffix(".seconds").write_text("60")
    proc = run_imgpipe.popen(cfg, ms_dir(tmp_path, "killed.MS"))
    assert wait_for(lambda: read_trace(trace) != [], 120)
    (left,) = folders(scratch)
    # killed outright, on the node first (its wrapper and WSClean: nothing there can clean
    # up), then imgpipe
    subprocess.run(["pkill", "-KILL", "-f", str(scratch / left)], check=False)
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(0.5)
    assert folders(scratch) == [left] and (scratch / left / ".imgpipe-owner").is_file()

    trace.with_suffix(".seconds").write_text("0")
    res = run_imgpipe(cfg, ms_dir(tmp_path, "next.MS"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert folders(scratch) == []
    assert f"imgpipe: removed {scratch / left}, left by an imgpipe run that died" in (tmp_path / "out" / "next.MS.log").read_text()


def test_too_little_free_space_fails_the_job_before_it_starts(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    scratch = tmp_path / "scratch"
    res = run_imgpipe(config(healthy_nodes, tmp_path, fake, scratch, temp_min_free="'1000TB'"), ms_dir(tmp_path, "a.MS"))
    assert res.returncode == 1
    assert "not started: the scratch folder's file system ([worker] temp_dir) has" in res.stdout
    assert "less than temp_min_free = 1000.0 TiB; free some space there or lower temp_min_free" in res.stdout
    assert read_trace(trace) == [] and folders(scratch) == []
