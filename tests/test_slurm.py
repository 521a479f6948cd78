"""Jobs through a real single-node SLURM (Debian slurm-wlm) started by the tests."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from imgpipe.backends.slurm import srun_argv
from imgpipe.core.config import WorkerConfig

from support.fake_wsclean import peak_overlap, read_trace
from support.jobs import make_job
from support.markers import requires_wsclean
from support.processes import alive
from support.sky import SOURCE_DEC, SOURCE_RA


@pytest.mark.parametrize(("scancel", "why"), [
    ("#!/bin/sh\necho 'scancel: error: Invalid job id specified' >&2\nexit 1\n",
     r"scancel exited with 1: scancel: error: Invalid job id specified"),
    (None, r"cannot run scancel: No such file or directory"),
])
def test_a_failing_scancel_is_logged_not_raised(tmp_path, monkeypatch, caplog, scancel, why):
    """release() runs in the flow's finally: an error there would hide the run's own."""
    from imgpipe.backends import slurm

    if scancel is not None:
        (tmp_path / "scancel").write_text(scancel)
        (tmp_path / "scancel").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = slurm.SlurmBackend(WorkerConfig(nodes=("slurm",)))
    backend.allocation = "4242"
    assert backend.release() is False
    assert backend.allocation is None
    (record,) = [r for r in caplog.records if r.name == "imgpipe.backends.slurm"]
    assert re.fullmatch(rf"could not cancel SLURM allocation 4242: {why} \(check with squeue; scancel it by hand\)",
                        record.getMessage()), record.getMessage()


def test_srun_command_line():
    job = make_job("slurm", ("wsclean", "x.MS"), ("x.MS",))
    worker = WorkerConfig(nodes=("slurm",), slurm_options=("-p", "cpu", "-c", "16", "--mem=64G"), max_time=3600, kill_grace=30)
    assert srun_argv(job, worker) == [
        "srun", "--job-name=imgpipe:img", "--ntasks=1", "--nodes=1", "--time=61", "-p", "cpu", "-c", "16", "--mem=64G",
    ]
    assert srun_argv(job, WorkerConfig(nodes=("slurm",)), allocation="42") == [
        "srun", "--job-name=imgpipe:img", "--ntasks=1", "--nodes=1", "--jobid=42", "--exact",
    ]


def slurm_config(tmp_path, body=None, **worker):
    lines = {"nodes": "'slurm'", **worker}
    text = "[worker]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
    text += body or f"[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp_path}/out'\nsize = [32, 32]\nscale = '1amin'\n"
    path = tmp_path / "imgpipe.toml"
    path.write_text(text)
    return path


def interrupt_and_wait_for_an_empty_queue(proc, slurm) -> None:
    """Ctrl-C imgpipe: it exits 130 and, within 15 s, SLURM holds nothing of it."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and slurm.queue():
        time.sleep(0.2)
    assert slurm.queue() == [], "SLURM still holds jobs of the interrupted run"


def ms_dirs(tmp_path, n):
    out = []
    for i in range(n):
        path = tmp_path / "data" / f"obs{i}.MS"
        path.mkdir(parents=True)
        out.append(str(path))
    return out


@requires_wsclean
@pytest.mark.prefect
def test_real_wsclean_through_slurm(slurm, run_imgpipe, ms_copy, tmp_path):
    from imgpipe.products.fits_peak import pixel_distance

    mss = ms_copy("SW01.MS", "SW02.MS")
    body = "[wsclean]\nname = 'img'\nout-dir = '$ms_in$/images'\nsize = [128, 128]\nscale = '2amin'\nniter = 200\nauto-threshold = 3\nweight = 'natural'\nj = 1\n"
    cfg = slurm_config(tmp_path, body, max_concurrent="2", slurm_options="'-c 1'")
    res = run_imgpipe(cfg, *mss, env={"SLURM_CONF": str(slurm.conf)})
    assert res.returncode == 0, res.stderr[-3000:] + slurm.log_tail()
    ids = re.findall(r"^  OK .* slurm (\d+)\.0 ", res.stdout, re.M)  # job id . step id
    assert len(ids) == 2 and len(set(ids)) == 2, res.stdout
    for ms in mss:
        image = Path(ms) / "images" / "img-image.fits"
        assert pixel_distance(str(image), SOURCE_RA, SOURCE_DEC) <= 1.0
        log = (Path(ms) / "images" / "img.log").read_text()
        assert re.search(r"^imgpipe: SLURM job \d+ step 0 on ", log, re.M) and "Writing restored image... DONE" in log


@requires_wsclean
@pytest.mark.prefect
def test_at_most_max_concurrent_slurm_jobs_in_flight(slurm, run_imgpipe, fake_wsclean, tmp_path):
    """The SLURM node could run 2 jobs at once; max_concurrent = 1 keeps one in flight."""
    fake, trace = fake_wsclean
    cfg = slurm_config(tmp_path, max_concurrent="1", wsclean=f"'{fake}'", slurm_options="'-c 1'")
    trace.with_suffix(".seconds").write_text("0.5")
    res = run_imgpipe(cfg, *ms_dirs(tmp_path, 4), env={"SLURM_CONF": str(slurm.conf)})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_trace(trace)
    assert sum(k == "end" for *_, k, _ in rows) == 4 and peak_overlap(rows) == 1
    # per-node accounting line for the run
    assert re.search(r"^  node slurm: 4 job\(s\), busy [\d.]+ s, slots busy \d+% \(1 slot\(s\)", res.stdout, re.M)


@requires_wsclean
@pytest.mark.prefect
def test_ctrl_c_scancels_what_was_submitted(slurm, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    cfg = slurm_config(tmp_path, max_concurrent="2", wsclean=f"'{fake}'", slurm_options="'-c 1'")
    trace.with_suffix(".seconds").write_text("120")
    proc = run_imgpipe.popen(cfg, *ms_dirs(tmp_path, 3), env={"SLURM_CONF": str(slurm.conf)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_trace(trace)) < 2:
        time.sleep(0.1)
    pids = [pid for _, pid, _, _ in read_trace(trace)]
    assert len(pids) == 2 and len(slurm.queue()) == 2  # two in flight, the third waits in imgpipe, not in SLURM
    interrupt_and_wait_for_an_empty_queue(proc, slurm)
    assert all(not alive(pid) for pid in pids)
    assert len(read_trace(trace)) == 2


@requires_wsclean
@pytest.mark.prefect
def test_jobs_as_steps_of_one_allocation(slurm, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    cfg = slurm_config(tmp_path, max_concurrent="2", wsclean=f"'{fake}'", slurm_nodes="1", slurm_options="'-c 1'")
    trace.with_suffix(".seconds").write_text("0.3")
    res = run_imgpipe(cfg, *ms_dirs(tmp_path, 3), env={"SLURM_CONF": str(slurm.conf)})
    assert res.returncode == 0, res.stderr[-3000:] + slurm.log_tail()
    steps = re.findall(r" slurm (\d+)\.(\d+) ", res.stdout)
    assert len(steps) == 3 and len({job for job, _ in steps}) == 1  # one allocation, three steps
    assert "SLURM allocation" in res.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and slurm.queue():
        time.sleep(0.2)
    assert slurm.queue() == []  # the allocation was given back


@requires_wsclean
@pytest.mark.prefect
def test_ctrl_c_while_the_allocation_waits_in_the_queue_cancels_it(slurm, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    # --begin in an hour: the allocation stays pending (as in a full queue)
    cfg = slurm_config(tmp_path, wsclean=f"'{fake}'", slurm_nodes="1", slurm_options="'-c 1 --begin=now+3600'")
    proc = run_imgpipe.popen(cfg, *ms_dirs(tmp_path, 2), env={"SLURM_CONF": str(slurm.conf)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not slurm.queue():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert len(slurm.queue()) == 1
    time.sleep(1)  # salloc has printed its job id
    interrupt_and_wait_for_an_empty_queue(proc, slurm)  # (the pending allocation is cancelled)
    assert read_trace(trace) == []


@requires_wsclean
@pytest.mark.prefect
def test_max_time_through_slurm(slurm, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    cfg = slurm_config(tmp_path, max_time="2", kill_grace_s="1", wsclean=f"'{fake}'", slurm_options="'-c 1'")
    trace.with_suffix(".seconds").write_text("60")
    t0 = time.monotonic()
    res = run_imgpipe(cfg, *ms_dirs(tmp_path, 1), env={"SLURM_CONF": str(slurm.conf)})
    assert res.returncode == 1
    assert re.search(r"^  TIMED-OUT .*\(timed out: ran longer than max_time 2s; stopped with SIGTERM", res.stdout, re.M), res.stdout
    assert time.monotonic() - t0 < 60
    assert shutil.which("srun")


# `scontrol show job -o` / `show node -o` of the test cluster (salloc --nodes=1, with and without --mem)
_JOB = ("JobId=1 JobName=x NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 "
        "TRES=cpu=1,node=1,billing=1 Socks/Node=* MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0")
_NODE = "NodeName=vm Arch=x86_64 CPUTot=2 RealMemory=4096 AllocMem=0 FreeMem=23287 Sockets=2"


@pytest.mark.parametrize(("job", "nodes", "expected"), [
    (_JOB, _NODE, (1, 4096, 1)),  # no memory asked: the node's
    (_JOB.replace("MinMemoryNode=0", "MinMemoryNode=2000M"), _NODE, (1, 2000, 1)),
    (_JOB.replace("NumNodes=1 NumCPUs=1", "NumNodes=4 NumCPUs=128").replace("MinMemoryNode=0", "MinMemoryCPU=4G"),
     _NODE, (32, 32 * 4096, 4)),
    (_JOB, _NODE.replace("RealMemory=4096", "RealMemory=1"), (1, 0, 1)),  # an unconfigured node: memory unknown
])
def test_an_allocation_s_size_per_node(job, nodes, expected):
    from imgpipe.backends.slurm import parse_allocation

    node, n = parse_allocation(job, nodes)
    assert (node.cores, node.mem_mb, n) == expected and node.limited_by == "SLURM allocation"
    assert parse_allocation("JobId=1 JobState=PENDING", "") is None


@requires_wsclean
@pytest.mark.prefect
def test_steps_of_an_allocation_share_its_node(slurm, run_imgpipe, tmp_path):
    """No cores or memory in slurm_options: the allocation's node (1 CPU and the cluster's
    default 1 GiB per CPU, as scontrol says) is shared by max_concurrent = 2 jobs: each step
    gets --cpus-per-task and --mem (read back from SLURM's own view of the step) and WSClean
    -j and -abs-mem."""
    fake = tmp_path / "wsclean"
    fake.write_text('#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\n'
                    'step=$(scontrol show step "$SLURM_JOB_ID.$SLURM_STEP_ID" -o)\n'
                    'echo "ARGV $* OMP=$OMP_NUM_THREADS $(grep -o "TRES=[^ ]*" <<< "$step")"\n')
    fake.chmod(0o755)
    cfg = slurm_config(tmp_path, max_concurrent="2", wsclean=f"'{fake}'", slurm_nodes="1")
    res = run_imgpipe(cfg, *ms_dirs(tmp_path, 2), env={"SLURM_CONF": str(slurm.conf)})
    assert res.returncode == 0, res.stderr[-3000:] + slurm.log_tail()
    # usable: 1024 MiB less 1 GiB, but never under half: 512 MiB, halved: 256 MiB (-abs-mem 0.25 GB rounded down)
    assert re.search(r"SLURM allocation \d+ of 1 node\(s\): 1 core\(s\), 1\.0 GiB \(SLURM allocation\) per node",
                     res.stdout + res.stderr), res.stderr[-3000:]
    for log in sorted((tmp_path / "out").glob("*.log")):
        said = [line for line in log.read_text().splitlines() if line.startswith("ARGV ")]
        assert len(said) == 1 and " -j 1 -abs-mem 0.2 " in said[0] and said[0].endswith(" OMP=1 TRES=cpu=1,mem=256M,node=1"), said
