"""A real ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME, for the
deployment tests and the benchmark (as sshd_nodes is for SSH): one way to start it, wait
for its API and stop its whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")
START_TIMEOUT_S = 120


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 30 s (nothing to do if the group is gone)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(home: Path, log_path: Path, server_env: dict | None = None):
    """Yields the environment that talks to the server (its PREFECT_HOME is ``home``,
    its output goes to ``log_path``, ``server_env`` is the server's own, e.g. its
    database URL); RuntimeError with the log's end if its API does not answer within
    START_TIMEOUT_S."""
    with server_process(home, log_path, server_env) as (env, _):
        yield env


@contextlib.contextmanager
def server_process(home: Path, log_path: Path, server_env: dict | None = None):
    """:func:`running_server`, yielding the server's process too (the scale benchmark reads its CPU)."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "CI": "true",
    }
    with open(log_path, "w") as log:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env={**env, **(server_env or {})}, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("prefect server did not start: " + Path(log_path).read_text()[-3000:]) from None
                time.sleep(0.5)
        yield env, server
    finally:
        stop_group(server)
