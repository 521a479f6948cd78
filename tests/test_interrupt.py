"""Ctrl-C or SIGTERM during a real run: running jobs are stopped, exit status 130.

A fake WSClean (prints the real help, then sleeps) stands in for a long imaging job:
this is fault injection, not a test of imaging.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from support.markers import requires_wsclean
from support.prefect_logs import state_of_last_flow_run
from support.processes import alive, wait_for

pytestmark = [requires_wsclean, pytest.mark.prefect]


def start_on_a_long_job(run_imgpipe, write_config, ms_copy, tmp_path, ignore_sigterm=False, worker="", until=None):
    """imgpipe on one MS whose fake WSClean sleeps 120 s (or until the file ``until``
    exists); (imgpipe's Popen, the job's pid) once it runs."""
    fake = tmp_path / "fakews"
    marker = tmp_path / "pids"
    trap = "trap '' TERM\n" if ignore_sigterm else ""
    wait = f'for _ in $(seq 600); do [ -e "{until}" ] && exit 0; sleep 0.2; done\n' if until else "sleep 120\n"
    fake.write_text(f'#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\n{trap}echo $$ >> "{marker}"\n{wait}')
    fake.chmod(0o755)
    (a,) = ms_copy("SW01.MS")
    cfg = write_config(f"[worker]\nwsclean = '{fake}'\n{worker}[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n")
    proc = run_imgpipe.popen(cfg, a)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not marker.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    return proc, int(marker.read_text().split()[0])


def embedded_servers(pid: int) -> list[int]:
    """The embedded Prefect servers (uvicorn) below the imgpipe process ``pid``."""
    from support.sshd_nodes import descendants

    return [p for p in descendants(pid) if b"uvicorn" in open(f"/proc/{p}/cmdline", "rb").read()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_running_jobs(prefect_home, ms_copy, tmp_path, sig):
    fake = tmp_path / "fakews"
    marker = tmp_path / "pids"
    fake.write_text(f'#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\necho $$ >> "{marker}"\nsleep 120\n')
    fake.chmod(0o755)
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = '$ms_basename$'\n")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "imgpipe", str(cfg), str(a), str(b)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # (Prefect's lines)
    reader.start()
    deadline = time.monotonic() + 120
    # both jobs running (their WSCleans' pids written)
    while time.monotonic() < deadline and (not marker.exists() or len(marker.read_text().split()) < 2):
        time.sleep(0.2)
    pids = [int(p) for p in marker.read_text().split()]
    assert len(pids) == 2
    t0 = time.monotonic()
    proc.send_signal(sig)
    proc.wait(60)
    reader.join(10)
    out, err = proc.stdout.read(), "".join(lines)
    assert proc.returncode == 130, err
    assert "interrupted: running WSClean jobs were stopped" in err
    # the summary says what became of every job
    assert "  CANCELLED SW01.MS @ localhost" in out and "  CANCELLED SW02.MS @ localhost" in out
    assert "2 job(s): 0 ok, 0 failed, 2 cancelled" in out
    for pid in pids:
        assert not alive(pid), "a WSClean job survived Ctrl-C"
    assert time.monotonic() - t0 < 10  # every WSClean gone, summary printed, imgpipe exited
    # asked to stop, the flow run ends Cancelled, quietly: Crashed is for a process that died (issue 45: 7)
    who = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM to imgpipe"
    assert state_of_last_flow_run(env) == ("CANCELLED", f"stopped by {who}: 0 ok, 0 failed, 2 cancelled")
    assert "Crash detected" not in out + err and "interrupt signal" not in out + err


def test_the_embedded_prefect_server_goes_with_imgpipe_even_on_sigkill(run_imgpipe, write_config, ms_copy, tmp_path):
    proc, job = start_on_a_long_job(run_imgpipe, write_config, ms_copy, tmp_path)
    servers = embedded_servers(proc.pid)
    assert len(servers) == 1  # imgpipe's embedded Prefect server
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (alive(servers[0]) or alive(job)):
        time.sleep(0.2)
    assert not alive(servers[0]), "the embedded Prefect server outlived imgpipe"
    assert not alive(job), "WSClean outlived imgpipe"


def test_the_embedded_prefect_server_is_gone_soon_after_a_run_that_ends_normally(run_imgpipe, write_config, ms_copy, tmp_path):
    """imgpipe tells its server to stop and does not wait for the server's own graceful
    shutdown; that shutdown still ends it."""
    go = tmp_path / "go"
    proc, job = start_on_a_long_job(run_imgpipe, write_config, ms_copy, tmp_path, until=go)
    servers = embedded_servers(proc.pid)
    assert len(servers) == 1
    go.touch()
    out, err = proc.communicate(timeout=120)
    assert "1 job(s)" in out, out + err
    assert wait_for(lambda: not alive(servers[0]), timeout_s=10), "the embedded Prefect server outlived imgpipe"


def test_a_second_ctrl_c_while_jobs_are_stopped_leaves_at_once_without_a_traceback(run_imgpipe, write_config, ms_copy, tmp_path):
    """The job ignores SIGTERM, so the first Ctrl-C's stop waits out its grace; a second
    Ctrl-C meanwhile used to print a KeyboardInterrupt traceback."""
    proc, job = start_on_a_long_job(run_imgpipe, write_config, ms_copy, tmp_path, ignore_sigterm=True, worker="kill_grace = 1\n")
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None  # still stopping the job (it ignores SIGTERM: up to 10 s)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 5
    assert "imgpipe: interrupted again: leaving now" in err and "Traceback" not in err, err
    deadline = time.monotonic() + 20  # its wrapper sees imgpipe gone: SIGTERM, SIGKILL after kill_grace
    while time.monotonic() < deadline and alive(job):
        time.sleep(0.2)
    assert not alive(job), "the job outlived imgpipe"
