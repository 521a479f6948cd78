"""At most max_concurrent jobs per node: the scheduler, and a real run that measures it."""

import os
import subprocess
import sys

import pytest

from conftest import requires_wsclean
from imgpipe.plan import Job
from imgpipe.scheduling import SlotScheduler


def job(host, i):
    return Job(host, ("wsclean", str(i)), (f"/{i}.MS",), None, None, "/out", f"i{i}")


def test_scheduler_fills_free_slots_in_plan_order_per_node():
    jobs = [job("a", 0), job("a", 1), job("a", 2), job("b", 3), job("a", 4), job("b", 5)]
    sched = SlotScheduler(jobs, max_concurrent=2)
    first = sched.take_ready()
    assert first == [jobs[0], jobs[1], jobs[3], jobs[5]]  # a busy node does not hold back b
    assert sched.take_ready() == []
    sched.release(jobs[1])
    assert sched.take_ready() == [jobs[2]]
    sched.release(jobs[0])
    assert sched.take_ready() == [jobs[4]] and sched.pending == 0
    assert sched.running == {"a": 2, "b": 2}


@requires_wsclean
@pytest.mark.prefect
def test_real_run_never_exceeds_max_concurrent(prefect_home, sim_dir, tmp_path):
    """Six 1-second jobs, max_concurrent = 2: the measured overlap is exactly 2."""
    fake = tmp_path / "fakews"
    times = tmp_path / "times"
    fake.write_text(f'#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\necho "start $(date +%s.%N)" >> "{times}"\nsleep 1\necho "end $(date +%s.%N)" >> "{times}"\n')
    fake.chmod(0o755)
    ms = []
    for i in range(6):
        path = tmp_path / f"obs{i}.MS"
        path.mkdir()
        ms.append(str(path))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nmax_concurrent = 2\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = 'out/$ms_basename$'\n")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "XDG_CACHE_HOME": str(tmp_path), "CI": "true"}
    res = subprocess.run([sys.executable, "-m", "imgpipe", str(cfg), *ms], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    events = sorted((float(t), kind) for kind, t in (line.split() for line in times.read_text().splitlines()))
    assert sum(kind == "start" for _, kind in events) == 6
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2
