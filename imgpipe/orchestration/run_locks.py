"""The imgpipe runs alive on one Prefect database: what lets a run start jobs before its flow does.

Why: node slots live in the Prefect server's database, which a run reaches only once
its flow runs (seconds after the command starts: Prefect's import, and with the
embedded server its start). A run may start jobs before that (the head start,
:mod:`imgpipe.cli.head_start`) only if no other run can hold slots there meanwhile. So
every run holds *shared* locks while it may take node slots, and a head start takes
them *exclusively*, without waiting; once its early jobs hold their slots in the
database, it turns them into shared ones. A run that finds a lock exclusive waits until
then (seconds).

The locks of a run (:func:`lock_paths`):
- ``$PREFECT_HOME/imgpipe-runs.lock``: the runs of this PREFECT_HOME (its SQLite
  database, whichever server of the home serves them);
- for a server on this machine's loopback, the lock of its port (under
  ``~/.cache/imgpipe``, named after the machine): the runs of other PREFECT_HOMEs, and
  deployment runs, that reach the same server by ``PREFECT_API_URL``.

POSIX record locks (``lockf``): the change from exclusive to shared is atomic, they
work on NFS, and the kernel drops them when their process dies, even on SIGKILL.

This module imports nothing of Prefect (the command line uses it before importing it).
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from imgpipe.facts.listening_sockets import is_loopback
from imgpipe.orchestration.embedded_server import prefect_home

LOCK_NAME = "imgpipe-runs.lock"
POLL_S = 0.1
"""How often a run waiting for a head start looks again."""

_fds: dict[Path, int] = {}
_exclusive: set[Path] = set()
"""Locks this process holds exclusively (its head start, until ``share_now``)."""
_guard = threading.Lock()


def lock_path(home: Path | None = None) -> Path:
    """The lock of the runs of a PREFECT_HOME."""
    return (home or prefect_home()) / LOCK_NAME


def loopback_port(api_url: str | None) -> int | None:
    """The port of a Prefect API on this machine's loopback (None: elsewhere, or none)."""
    try:
        parts = urlsplit(str(api_url or ""))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not is_loopback(host):
        return None
    return port or (443 if parts.scheme == "https" else 80)


def server_lock_path(port: int) -> Path:
    """The lock of the runs that reach the loopback server on ``port`` (per user: a file
    another user could hold in a shared folder would stop this user's runs)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "imgpipe" / f"prefect-server-{socket.gethostname()}-{port}.lock"


def lock_paths(api_url: str | None, home: Path | None = None) -> tuple[Path, ...]:
    """The locks of a run whose Prefect API is ``api_url`` (see the module docstring)."""
    port = loopback_port(api_url)
    return (lock_path(home),) + ((server_lock_path(port),) if port is not None else ())


def _fd(path: Path) -> int:
    if path not in _fds:
        path.parent.mkdir(parents=True, exist_ok=True)
        _fds[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return _fds[path]


def try_exclusive(paths: tuple[Path, ...]) -> bool:
    """Is this process the only imgpipe run of these locks? Holds them all exclusively if
    so, else none (also when a lock file cannot be made: no head start then)."""
    with _guard:
        taken = []
        try:
            for path in paths:
                fcntl.lockf(_fd(path), fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken.append(path)
        except OSError:
            for path in taken:
                fcntl.lockf(_fds[path], fcntl.LOCK_UN)
            return False
        _exclusive.update(paths)
        return True


def share_now() -> None:
    """The head start's jobs hold their slots: other runs may go on (atomic EX → SH)."""
    with _guard:
        for path in tuple(_exclusive):
            fcntl.lockf(_fds[path], fcntl.LOCK_SH)
            _exclusive.discard(path)


@contextmanager
def run_holding(paths: tuple[Path, ...], on_wait=lambda: None):
    """Hold ``paths`` shared while a run may take node slots (released at the end).

    Waits while another process's head start holds one exclusively (``on_wait`` is
    called once, then). In this process's own head start, its locks stay exclusive
    until :func:`share_now`. A lock file that cannot be made (a read-only home) cannot
    host a head start either: the run goes on without it."""
    held = []
    told = False
    try:
        for path in paths:
            try:
                with _guard:
                    fd = _fd(path)
            except OSError:
                continue
            if path not in _exclusive:
                while True:
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                        break
                    except OSError:
                        if not told:
                            on_wait()
                            told = True
                        time.sleep(POLL_S)
            held.append((path, fd))
        yield
    finally:
        with _guard:
            for path, fd in held:
                _exclusive.discard(path)
                fcntl.lockf(fd, fcntl.LOCK_UN)
