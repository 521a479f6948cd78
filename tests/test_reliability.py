"""Faults with real processes: nodes that die and come back, a long soak; nothing lost,
nothing run twice at once, the cap never exceeded, imgpipe's memory flat."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import defaultdict

import pytest
from test_ssh import make_ms_dirs, node_config, summary_rows

from support.fake_wsclean import peak_overlap, read_trace
from support.markers import requires_wsclean
from support.processes import rss_mib

pytestmark = [requires_wsclean, pytest.mark.prefect]


def runs_per_ms(trace):
    """MS → list of (start, end or None) of each WSClean run on it (from the fake's trace)."""
    by_pid = {}
    for line in trace.read_text().splitlines():
        node, pid, kind, t, ms = line.split()[:5]
        by_pid.setdefault((node, pid, ms), {})[kind] = float(t)
    runs = defaultdict(list)
    for (_, _, ms), times in by_pid.items():
        runs[ms].append((times.get("start"), times.get("end")))
    return runs


def test_sshd_killed_and_restarted_during_a_40_job_run(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    # 1 s jobs: node102's cool-downs double while its sshd is down (0.5 + 1 + 2 s), and
    # with 0.5 s jobs the other nodes could finish the run before it was tried again
    trace.with_suffix(".seconds").write_text("1.0")
    cfg = node_config(healthy_nodes, tmp_path, nodes="'node[101-103]'", max_concurrent="2", wsclean=f"'{fake}'",
                      retries="3", retry_delay_seconds="0.3", host_cooldown_s="0.5")
    ms = make_ms_dirs(tmp_path, 40)
    proc = run_imgpipe.popen(cfg, *ms)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_trace(trace)) < 12:
        time.sleep(0.05)
    node = healthy_nodes["node102"]
    healthy_nodes.kill(node)
    time.sleep(2)
    healthy_nodes.start(node)
    out, err = proc.communicate(timeout=600)
    rows = summary_rows(out)
    # every job ends succeeded or failed-with-reason; none silently missing
    assert sorted(re.match(r"(\S+)", rest).group(1) for _, rest in rows) == sorted(m.rsplit("/", 1)[1] for m in ms)
    assert all(s == "OK" or (s == "FAILED" and "(" in rest) for s, rest in rows)
    assert proc.returncode == (0 if all(s == "OK" for s, _ in rows) else 1)
    # none runs twice at the same time: a second run of an MS starts only after the first ended
    for name, runs in runs_per_ms(trace).items():
        runs.sort()
        for (_, e1), (s2, _) in itertools.pairwise(runs):
            assert e1 is not None and e1 <= s2, f"{name} ran twice at once"
    assert "retry" in err or all(s == "OK" for s, _ in rows)
    if "retry" in err:  # a retry is a task run of its own, named for its attempt
        assert re.search(r"Task run 'wsclean obs_\d+\.MS @ node10\d \(attempt 2\)' - ", err)
    assert any(s == "OK" and "@ node102" in rest for s, rest in rows)  # node102 took work again after its restart


def test_soak_300_jobs_on_3_nodes(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """300 short jobs, 3 nodes × 3 slots: zero lost, the cap held, imgpipe's memory flat."""
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("0.1")
    cfg = node_config(healthy_nodes, tmp_path, nodes="'node[101-103]'", max_concurrent="3", wsclean=f"'{fake}'")
    ms = make_ms_dirs(tmp_path, 300)
    proc = run_imgpipe.popen(cfg, *ms)
    samples = []

    def sample():
        while proc.poll() is None:
            rss = rss_mib(proc.pid)
            if rss is not None:
                samples.append((len(read_trace(trace)), rss))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate(timeout=1200)
    sampler.join()
    assert proc.returncode == 0, err[-3000:]
    rows = read_trace(trace)
    assert sum(kind == "end" for *_, kind, _ in rows) == 300 and len(summary_rows(out)) == 300
    for node in ("node101", "node102", "node103"):
        assert peak_overlap(rows, node) <= 3
    # memory: once jobs flow, the last quarter of the run uses no more than the first quarter (+25 MiB)
    running = [mb for done, mb in samples if done > 0]
    quarter = max(1, len(running) // 4)
    early, late = max(running[:quarter]), max(running[-quarter:])
    print(f"imgpipe RSS: early {early:.0f} MiB, late {late:.0f} MiB, peak {max(running):.0f} MiB over {len(samples)} samples")
    assert late <= early + 25, (early, late)


def test_a_full_disk_fails_that_job_clearly(run_imgpipe, write_config, ms_copy, tmp_path):
    """The out-dir is a 400 KiB tmpfs (in a mount namespace of the test's own): WSClean cannot
    write its images; that job fails with WSClean's own words, the other one succeeds."""
    import json
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("cannot create a mount namespace here (unshare -rm)")
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config(
        "[wsclean]\nname = 'img'\nout-dir = 'disks/$ms_basename$'\nsize = '256 256'\nscale = '1amin'\nniter = 10\nj = 1\n"
    )
    (tmp_path / "disks" / "SW01.MS").mkdir(parents=True)
    (tmp_path / "disks" / "SW02.MS").mkdir(parents=True)
    script = 'mount -t tmpfs -o size=400k tmpfs disks/SW01.MS && exec "$@"'
    res = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m", "imgpipe", str(cfg), str(a), str(b)],
                         cwd=tmp_path, env=run_imgpipe.base_env(), capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 1, res.stderr[-3000:]
    # the reason ends with WSClean's own last words
    assert re.search(r"^  FAILED    SW01.MS @ localhost .*\(exit code 255: .*CFITSIO reported error .*error writing", res.stdout, re.M), res.stdout
    assert re.search(r"^  OK        SW02.MS @ localhost", res.stdout, re.M)
    record = json.loads((tmp_path / "disks" / "SW02.MS" / "img.imgpipe.json").read_text())
    assert record["complete"] is True  # the other job is untouched


def test_a_job_killed_out_of_memory_is_named_and_retried_once_alone(run_imgpipe, write_config, tmp_path):
    """Two jobs that fit a node's memory one at a time but not together: in a 300 MiB cgroup
    each holds 200 MiB, so the kernel's OOM killer takes one. Its line says "out of memory"
    with its peak; with retry_oom it runs again, alone, and succeeds; without, it fails."""
    from support.cgroups import memory_cgroup

    with memory_cgroup(300) as prefix:
        if prefix is None:
            pytest.skip("cannot make a memory cgroup here (no permission or no memory controller)")
        cgroup_procs = prefix[2].split(" > ")[1].split(" ")[0]
        stand_in = tmp_path / "hungry-wsclean"
        stand_in.write_text(
            '#!/bin/bash\n[ $# -eq 0 ] && exec wsclean\n'
            f'echo $$ > {cgroup_procs}\n'
            "exec python3 -c \"import time; b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)\"\n")
        stand_in.chmod(0o755)
        mss = make_ms_dirs(tmp_path, 2)
        for retry in ("true", "false"):
            cfg = write_config(f"[worker]\nwsclean = '{stand_in}'\nmax_concurrent = 2\nretry_oom = {retry}\n"
                               f"[wsclean]\nout-dir = '{tmp_path}/img-{retry}/$ms_basename$'\nsize = '64 64'\n")
            res = run_imgpipe(cfg, *mss)
            out = res.stdout + res.stderr
            assert re.search(r"out of memory \(peak \d+ MiB of [\d.]+ GiB given\): killed by the kernel's OOM killer", out), out
            if retry == "true":
                assert res.returncode == 0 and "2 job(s): 2 ok, 0 failed" in res.stdout, out
                assert "once, alone on a node (retry_oom = true)" in out
                assert "(attempt 2)' - given 2 core(s)" in out or "all of localhost" in out  # the whole node's share
            else:
                assert res.returncode != 0 and "2 job(s): 1 ok, 1 failed" in res.stdout, out
