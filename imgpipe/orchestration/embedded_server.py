"""The embedded Prefect server of a CLI run, started before Prefect is imported.

Why not let Prefect start it: Prefect starts its temporary server only when the flow
first needs the API, after this process has spent seconds importing Prefect, and the
server then spends more seconds importing its own web application. Started first, the
two imports run side by side (2 cores: about 3–4 s less per run). It is the same
server Prefect would start (uvicorn, Prefect's app factory, this PREFECT_HOME's
database, UI off) and it dies with this process, even on SIGKILL.

This module imports nothing of Prefect: that is its point.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgpipe.orchestration.prefect_internals import EPHEMERAL_ENV, SERVER_APP, SERVER_ENV

_PR_SET_PDEATHSIG = 1
RESTARTS = 2
"""Starts tried again when the server exits before answering (see ``wait_ready``)."""


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def server_argv(port: int) -> list[str]:
    """The command of a Prefect server on 127.0.0.1:``port``: Prefect's own (uvicorn and
    its app factory), as ``prefect server start`` runs it, without importing Prefect."""
    spec = importlib.util.find_spec("prefect")  # finds, does not import
    assert spec is not None and spec.submodule_search_locations, "Prefect is not installed"
    app_dir = Path(list(spec.submodule_search_locations)[0]).parent
    return [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory", SERVER_APP,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]


def server_env(ui: bool, ephemeral: bool, port: int | None = None, auth_string: str | None = None) -> dict[str, str]:
    """The server's environment: this one's, without PREFECT_API_URL (it is the API).
    ``auth_string``: the server refuses a request without it, checks CSRF tokens and
    lets no other web origin than its own (127.0.0.1:``port``) call it."""
    env = {**os.environ, "PREFECT_UI_ENABLED": "1" if ui else "0", **SERVER_ENV}
    if auth_string:
        env.update(PREFECT_SERVER_API_AUTH_STRING=auth_string, PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED="true",
                   PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS=f"http://127.0.0.1:{port}")
    if ephemeral:
        env.update(EPHEMERAL_ENV)
    env.pop("PREFECT_API_URL", None)
    return env


def answers(api_url: str, client) -> bool:
    """Does the API at ``api_url`` say it is healthy (``client``: an httpx.Client)?"""
    # httpx: the caller's, imported once a server was started
    import httpx

    try:
        return client.get(f"{api_url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedServer:
    """``start()`` returns at once; ``wait_ready()`` before the first API call; ``stop()`` at the end."""

    def __init__(self):
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._stderr = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> str:
        """Start the server process; returns its API URL (set PREFECT_API_URL to it before importing Prefect)."""
        self.port = _free_port()
        self._spawn()
        return self.api_url

    def _spawn(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            server_argv(self.port), env=server_env(ui=False, ephemeral=True), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._stderr, preexec_fn=_die_with_parent,
            start_new_session=True,  # a Ctrl-C on the terminal is for imgpipe, which still needs the API to wind up
        )

    def _started(self) -> subprocess.Popen:
        assert self.process is not None, "start() first"
        return self.process

    def wait_ready(self, timeout_s: float, abort=lambda: False) -> None:
        """Wait for the API to answer (or until ``abort()`` says the run stops); RuntimeError
        with the server's own words if it does not."""
        # httpx: only once the server was started
        import httpx

        deadline = time.monotonic() + timeout_s
        restarts = 0
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if abort():
                    return
                if self._started().poll() is not None:
                    if restarts == RESTARTS:
                        break
                    # Two runs starting on a new PREFECT_HOME both migrate its database, and
                    # the loser's server exits ("Application startup failed"): once the
                    # winner is done, a second start finds the database ready.
                    restarts += 1
                    time.sleep(0.5 * restarts)
                    self._spawn()
                    continue
                if answers(self.api_url, client):
                    return
                time.sleep(0.05)
        stderr = self._stderr
        assert stderr is not None
        stderr.seek(0)
        said = [line.strip() for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        process = self._started()
        how = f"exited with {process.returncode}" if process.poll() is not None else f"no answer in {timeout_s:g} s"
        raise RuntimeError(f"the embedded Prefect server did not start ({how}): {said[-1] if said else 'no output'}")

    def stop(self, wait: bool = True) -> None:
        """Tell the server to stop (SIGTERM: it takes no new request and finishes its own
        shutdown); with ``wait``, until it is gone (SIGKILL after 5 s).

        ``wait=False`` is the command line's: the server's graceful stop then overlaps
        the process's quick exit instead of delaying it. The server is already stopping
        and gets SIGTERM again when this process ends; if this process exits normally
        (imgpipe called from a Python program), it still waits for it, at exit."""
        if self.process is None:
            return
        self.process.terminate()
        if wait:
            self._reap()
        else:
            atexit.register(self._reap)

    def _reap(self) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        if self._stderr is not None:
            self._stderr.close()
