"""A real ``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME, for the
deployment tests and the benchmark (as sshd_nodes is for SSH): one way to start it, wait
for its API and stop its whole process group."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
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
    START_TIMEOUT_S. The server is set up as docs/deployments.md says: an auth string
    (the yielded env holds the clients' ``PREFECT_API_AUTH_STRING``), CSRF protection on,
    CORS for its own origin only."""
    with server_process(home, log_path, server_env) as (env, _):
        yield env


def locked_down(port: int, auth_string: str) -> dict[str, str]:
    """The server settings docs/deployments.md gives every server."""
    return {
        "PREFECT_SERVER_API_AUTH_STRING": auth_string,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
    }


class Server:
    """A ``prefect server start`` of ``home`` on one port, which a test may stop and start
    again (an outage): the same port, auth string and database each time."""

    def __init__(self, home: Path, log_path: Path, server_env: dict | None = None, locked: bool = True):
        self.port = free_port()
        auth_string = secrets.token_urlsafe(24) if locked else ""
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "CI": "true",
            **({"PREFECT_API_AUTH_STRING": auth_string} if locked else {}),
        }
        """What a client of this server sets."""
        self._own = {**self.env, **(locked_down(self.port, auth_string) if locked else {}), **(server_env or {})}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                                            env=self._own, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("prefect server did not start: " + Path(self.log_path).read_text()[-3000:]) from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None


@contextlib.contextmanager
def server_process(home: Path, log_path: Path, server_env: dict | None = None, locked: bool = True):
    """:func:`running_server`, yielding the server's process too (the scale benchmark reads its CPU).
    ``locked=False``: no auth string, CSRF or CORS settings (the benchmark's UI timing)."""
    Path(log_path).write_text("")
    server = Server(home, log_path, server_env, locked)
    server.start()
    try:
        yield server.env, server.process
    finally:
        server.stop()


def api(env: dict, method: str, path: str, body: dict | None = None, auth: bool = True):
    """One request to the server's REST API as a client of ``env`` would make it: its auth
    string, and a CSRF token for a request that changes something. Returns the JSON answer."""
    url = env["PREFECT_API_URL"]
    headers = {"Content-Type": "application/json"}
    if auth and env.get("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(env["PREFECT_API_AUTH_STRING"].encode()).decode()
    if method != "GET" and auth:
        client = "imgpipe-tests"
        token = urllib.request.Request(f"{url}/csrf-token?client={client}", headers=headers)
        try:
            with urllib.request.urlopen(token, timeout=10) as r:
                headers.update({"Prefect-Csrf-Token": json.loads(r.read())["token"], "Prefect-Csrf-Client": client})
        except urllib.error.HTTPError as err:
            if err.code != 422:  # (422: the server has CSRF protection off)
                raise
    request = urllib.request.Request(url + path, method=method, headers=headers,
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read() or b"null")
