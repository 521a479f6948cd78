"""A Prefect server kept between runs (``[prefect] server = 'kept'``).

Why: a run's embedded server costs seconds before the first WSClean starts (its web
application imports and its database opens on every run); a server that stays up
costs them once. The first run that finds none starts it, in the background, on
127.0.0.1 at ``PREFECT_SERVER_API_PORT`` (Prefect's default 4200), UI on: the run
history then stays at one address. It is Prefect's own background server: its pid is
in ``$PREFECT_HOME/server.pid``, so ``prefect server stop`` stops it, and a server
started with ``prefect server start --background`` is found and used in the same way.
A pid file whose process is gone (killed, machine rebooted) is replaced.

Like embedded_server, this module imports nothing of Prefect.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from imgpipe.facts.prefect_profile import prefect_home
from imgpipe.orchestration.embedded_server import answers, server_argv, server_env
from imgpipe.orchestration.prefect_internals import PID_FILE, is_prefect_server

LOG_FILE = "imgpipe-server.log"
AUTH_FILE = "imgpipe-server.auth"
"""The auth string of the kept server imgpipe started (mode 0600): its clients send it."""
DEFAULT_PORT = 4200


def _port() -> int:
    try:
        return int(os.environ.get("PREFECT_SERVER_API_PORT") or DEFAULT_PORT)
    except ValueError:
        return DEFAULT_PORT


def server_argv_of(pid: int) -> list[str]:
    """The command line of process ``pid`` ([] if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def server_port(pid: int) -> int | None:
    """The port of the Prefect server ``pid`` (its ``--port``), or None when ``pid`` is no
    Prefect server (gone, or a pid reused by another program after a reboot)."""
    argv = server_argv_of(pid)
    if not is_prefect_server(argv):
        return None
    try:
        return int(argv[argv.index("--port") + 1])
    except (ValueError, IndexError):
        return DEFAULT_PORT


class KeptServer:
    """``start()`` finds the kept server or starts it, and returns its API URL;
    ``wait_ready()`` before the first API call; ``stop()`` leaves it running."""

    def __init__(self):
        self.home = prefect_home()
        self.pid: int | None = None
        self.port = 0
        self.started = False
        """This run started it (else it was found running)."""
        self.replaced: int | None = None
        """The pid of a stale pid file this run replaced."""
        self.auth_string: str | None = None
        """What its clients send (None: a server started by hand, with no auth file)."""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def auth_file(self) -> Path:
        return self.home / AUTH_FILE

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        pid_file = self.home / PID_FILE
        self.home.mkdir(parents=True, exist_ok=True)
        for _ in range(50):  # another run may be starting it at this very moment
            try:
                fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                text = pid_file.read_text(encoding="utf-8", errors="replace").strip()
                if not text:  # being written by the run that starts it
                    time.sleep(0.1)
                    continue
                pid = int(text) if text.isdigit() else -1
                port = server_port(pid) if pid > 0 else None
                if port is not None:
                    self.pid, self.port = pid, port
                    self.auth_string = self._read_auth()
                    return self.api_url
                self.replaced = pid
                pid_file.unlink(missing_ok=True)  # stale: its server is gone
                continue
            with os.fdopen(fd, "w") as out:
                self.port = _port()
                self.pid = self._spawn()
                self.started = True
                out.write(str(self.pid))
            return self.api_url
        raise RuntimeError(f"{pid_file} stays empty: remove it if no imgpipe or Prefect server is starting")

    def _read_auth(self) -> str | None:
        try:
            return self.auth_file.read_text().strip() or None
        except OSError:
            return None

    def _spawn(self) -> int:
        # an auth string of its own: it outlives the run on a port every account of this machine reaches
        self.auth_string = secrets.token_urlsafe(32)
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.auth_string + "\n")
        with open(self.home / LOG_FILE, "ab") as log:
            process = subprocess.Popen(
                server_argv(self.port), env=server_env(True, False, self.port, self.auth_string), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,  # outlives this run, and its Ctrl-C
            )
        return process.pid

    def wait_ready(self, timeout_s: float, abort=lambda: False) -> None:
        """Wait for the API to answer (or until ``abort()`` says the run stops); RuntimeError naming the log if it does not."""
        # httpx: only once the server was started
        import httpx

        assert self.pid is not None, "start() first"
        pid = self.pid
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if abort() or answers(self.api_url, client):
                    return
                if server_port(pid) is None:  # exited (e.g. its port is taken)
                    (self.home / PID_FILE).unlink(missing_ok=True)
                    break
                time.sleep(0.05)
        log = self.home / LOG_FILE
        try:
            said = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            said = []
        how = "exited" if server_port(pid) is None else f"no answer in {timeout_s:g} s"
        raise RuntimeError(f"the kept Prefect server on port {self.port} did not start ({how}): "
                           f"{said[-1] if said else 'no output'} (its log: {log}; PREFECT_SERVER_API_PORT sets the port)")

    def stop(self, wait: bool = True) -> None:
        """Nothing: it is kept (``prefect server stop`` stops it)."""
