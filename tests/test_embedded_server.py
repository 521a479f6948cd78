"""The CLI's embedded Prefect server: started before Prefect is imported, gone with its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from imgpipe.orchestration.embedded_server import EmbeddedServer

from support.processes import alive, wait_for


def test_stop_without_waiting_leaves_the_server_to_finish_its_own_shutdown(tmp_path, monkeypatch):
    """The command line does not wait for the server's graceful stop (it overlaps the
    exit); the server is told to stop all the same and is gone soon after."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = EmbeddedServer()
    server.start()
    try:
        server.wait_ready(120)
        pid = server.process.pid
        server.stop(wait=False)
        assert server.process.returncode is None  # told, not waited for
        assert wait_for(lambda: server.process.poll() is not None, timeout_s=10)
        # uvicorn re-raises the SIGTERM it caught once its shutdown is done: -15, not SIGKILL's -9
        assert server.process.returncode == -signal.SIGTERM
        assert not alive(pid)
    finally:
        server.stop()  # (reaps it, or stops a server this test failed on)


def test_a_python_program_that_exits_normally_waits_for_its_server(tmp_path):
    """Library use: stop(wait=False) then a normal interpreter exit; the server is gone
    (reaped by the program) by the time the program has exited."""
    program = (
        "from imgpipe.orchestration.embedded_server import EmbeddedServer\n"
        "server = EmbeddedServer()\nserver.start()\nserver.wait_ready(120)\n"
        "print(server.process.pid, flush=True)\nserver.stop(wait=False)\n"
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    assert not alive(pid)
