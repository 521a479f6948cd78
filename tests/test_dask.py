"""``[prefect] task_runner = 'dask'``: real WSClean jobs on a real Dask cluster.

The test starts ``dask scheduler`` and two ``dask worker`` processes (node-a, node-b) on
127.0.0.1. Jobs run real WSClean through a thin tracing wrapper (``[worker] wsclean``)
that notes when and on which worker each job ran, so the per-node limits can be
checked; the images are checked for the simulated source.
"""

import re
import signal
import time

import pytest

from imgpipe.products.fits_peak import pixel_distance

from support.fake_wsclean import peak_overlap, read_trace
from support.markers import requires_wsclean
from support.prefect_logs import logs_of_last_flow_run
from support.processes import alive
from support.sky import SMALL_IMAGE, SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]

TRACED_WSCLEAN = """#!/bin/bash
[ $# -eq 0 ] && exec wsclean
echo "${IMGPIPE_NODE:-local} $$ start $(date +%s.%N) ${@: -1}" >> "TRACE"
wsclean "$@"; rc=$?
echo "${IMGPIPE_NODE:-local} $$ end $(date +%s.%N) ${@: -1}" >> "TRACE"
exit $rc
"""



@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    from support.dask_cluster import DaskCluster

    cluster = DaskCluster(tmp_path_factory.mktemp("dask"), {"node-a": 4, "node-b": 4})
    yield cluster
    cluster.stop()
    for pid in cluster.worker_pids():
        assert not alive(pid)


@pytest.fixture
def traced_wsclean(tmp_path):
    trace = tmp_path / "trace"
    path = tmp_path / "traced-wsclean"
    path.write_text(TRACED_WSCLEAN.replace("TRACE", str(trace)))
    path.chmod(0o755)
    return path, trace


def test_jobs_run_on_the_named_workers_and_the_node_limit_holds(dask_cluster, run_imgpipe, write_config, ms_copy, traced_wsclean, tmp_path):
    wrapper, trace = traced_wsclean
    ms = ms_copy("SW01.MS", "SW02.MS", "SW03.MS")
    cfg = write_config(
        f"[prefect]\ntask_runner = 'dask'\ndask_address = '{dask_cluster.address}'\n"
        f"[worker]\nnodes = 'node-a,node-b'\nmax_concurrent = 1\nwsclean = '{wrapper}'\n" + SMALL_IMAGE
    )
    res = run_imgpipe(cfg, *ms)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "3 job(s): 3 ok, 0 failed" in res.stdout
    for m in ms:
        image = tmp_path / "images" / m.name / "img-image.fits"
        assert pixel_distance(str(image), SOURCE_RA, SOURCE_DEC) <= 1.0
    rows = read_trace(trace)
    assert len(rows) == 6
    # (a worker has 4 threads: only imgpipe's per-node limit keeps it to one job at a time)
    assert peak_overlap(rows, "node-a") == 1 and peak_overlap(rows, "node-b") == 1
    assert {n for n, *_ in rows} == {"node-a", "node-b"}
    # each node's size was read on its worker, and its jobs were given their share of it
    assert re.search(r"node node-a: \d+ core\(s\), [\d.]+ GiB", res.stderr), res.stderr[-3000:]
    # each job's task ran on a Dask worker and reported to this run in Prefect
    logs = logs_of_last_flow_run(run_imgpipe.base_env())
    assert sum("(Dask worker tcp://127.0.0.1:" in line for line in logs) == 3
    assert sum(line.startswith("done in ") for line in logs) == 3
    given = [line for line in logs if re.search(r"given \d+ core\(s\) and [\d.]+ GiB: all of node-[ab] \(\d+ core\(s\)", line)]
    assert len(given) == 3, [line for line in logs if "given" in line or "wsclean" in line]


def test_run_on_file_host_pins_jobs_to_the_worker_of_their_node(dask_cluster, run_imgpipe, write_config, ms_copy, traced_wsclean, tmp_path):
    wrapper, trace = traced_wsclean
    node_b = tmp_path / "net" / "node-b"
    node_b.mkdir(parents=True)
    ms = []
    for m in ms_copy("SW01.MS", "SW02.MS"):
        m.rename(node_b / m.name)
        ms.append(node_b / m.name)
    cfg = write_config(
        f"[prefect]\ntask_runner = 'dask'\ndask_address = '{dask_cluster.address}'\n"
        f"[worker]\nnodes = 'node-a,node-b'\nmax_concurrent = 2\nwsclean = '{wrapper}'\n"
        "run_on_file_host = true\nrun_on_file_host_pattern = '/net/(node-[ab])/'\n" + SMALL_IMAGE
    )
    res = run_imgpipe(cfg, *ms)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert {n for n, *_ in read_trace(trace)} == {"node-b"}
    assert "SW01.MS @ node-b" in res.stdout and "SW02.MS @ node-b" in res.stdout


def test_a_node_without_a_dask_worker_is_one_clear_error(dask_cluster, run_imgpipe, write_config, ms_copy):
    (a,) = ms_copy("SW01.MS")
    cfg = write_config(
        f"[prefect]\ntask_runner = 'dask'\ndask_address = '{dask_cluster.address}'\n"
        "[worker]\nnodes = 'node-a,node-z'\n" + SMALL_IMAGE
    )
    res = run_imgpipe(cfg, a)
    assert res.returncode == 2, res.stdout + res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("imgpipe: error: 1 node(s) without a Dask worker: node-z: no Dask worker on this node"), last
    assert "node-a on 127.0.0.1" in last and "skip_unreachable_nodes" in last
    assert "Traceback" not in res.stdout + res.stderr
    assert "Beginning flow run" not in res.stderr  # found before Prefect starts


def test_a_scheduler_that_does_not_answer_is_one_clear_error(run_imgpipe, write_config, ms_copy):
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (a,) = ms_copy("SW01.MS")
    cfg = write_config(f"[prefect]\ntask_runner = 'dask'\ndask_address = 'tcp://127.0.0.1:{port}'\n" + SMALL_IMAGE)
    res = run_imgpipe(cfg, a)
    assert res.returncode == 2
    assert res.stderr.startswith(f"imgpipe: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (a.parent / "images").exists()


def test_ctrl_c_stops_the_jobs_on_the_workers_and_leaves_the_workers_up(dask_cluster, run_imgpipe, write_config, ms_copy, tmp_path):
    # fault injection: a fake WSClean that sleeps
    marker = tmp_path / "pids"
    fake = tmp_path / "fakews"
    fake.write_text(f'#!/bin/bash\n[ $# -eq 0 ] && exec wsclean\necho $$ >> "{marker}"\nsleep 120\n')
    fake.chmod(0o755)
    ms = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config(
        f"[prefect]\ntask_runner = 'dask'\ndask_address = '{dask_cluster.address}'\n"
        f"[worker]\nnodes = 'node-a,node-b'\nmax_concurrent = 1\nwsclean = '{fake}'\n" + SMALL_IMAGE
    )
    proc = run_imgpipe.popen(cfg, *ms)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (marker.exists() and len(marker.read_text().split()) == 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    pids = [int(p) for p in marker.read_text().split()]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "2 cancelled" in out
    while time.monotonic() - t0 < 15 and any(alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(alive(p) for p in pids), "a job on a Dask worker survived Ctrl-C"
    assert time.monotonic() - t0 < 15
    assert all(alive(p) for p in dask_cluster.worker_pids())  # the cluster is not ours to stop
    dask_cluster.wait_for_workers(2, timeout=10)


def test_a_temporary_local_cluster_when_no_address_is_given(run_imgpipe, write_config, ms_copy, tmp_path):
    ms = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config("[prefect]\ntask_runner = 'dask'\n[worker]\nmax_concurrent = 2\n" + SMALL_IMAGE)
    res = run_imgpipe(cfg, *ms)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "SW01.MS @ dask" in res.stdout
    for m in ms:
        assert pixel_distance(str(tmp_path / "images" / m.name / "img-image.fits"), SOURCE_RA, SOURCE_DEC) <= 1.0
    assert "distributed.LocalCluster" not in res.stderr or "Creating a new Dask cluster" in res.stderr
