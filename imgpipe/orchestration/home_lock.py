"""The imgpipe runs alive on one PREFECT_HOME: what lets a run start jobs before its server answers.

Why: node slots live in the PREFECT_HOME's database, which a run reaches only once its
Prefect server answers (seconds after the command starts, with the embedded server).
A run may start jobs before that (the head start, :mod:`imgpipe.cli.head_start`) only if
no other run can hold slots there meanwhile. So every run holds a *shared* lock on
``$PREFECT_HOME/imgpipe-runs.lock`` while it may take node slots, and a head start takes
it *exclusively*, without waiting; once its early jobs hold their slots in the database,
it turns the lock into a shared one. A run that finds the lock exclusive waits until
then (seconds). POSIX record locks (``lockf``): the change from exclusive to shared is
atomic, they work on NFS, and the kernel drops them when their process dies, even on
SIGKILL.

This module imports nothing of Prefect (the command line uses it before importing it).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from imgpipe.orchestration.embedded_server import prefect_home

LOCK_NAME = "imgpipe-runs.lock"
POLL_S = 0.1
"""How often a run waiting for a head start looks again."""

_fds: dict[Path, int] = {}
_exclusive: set[Path] = set()
"""Homes whose lock this process holds exclusively (its head start, until ``share_now``)."""
_guard = threading.Lock()


def lock_path(home: Path | None = None) -> Path:
    return (home or prefect_home()) / LOCK_NAME


def _fd(path: Path) -> int:
    if path not in _fds:
        path.parent.mkdir(parents=True, exist_ok=True)
        _fds[path] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    return _fds[path]


def try_exclusive(home: Path | None = None) -> bool:
    """Is this process the only imgpipe run of the home? Holds the lock exclusively if so."""
    path = lock_path(home)
    with _guard:
        try:
            fcntl.lockf(_fd(path), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        _exclusive.add(path)
        return True


def share_now(home: Path | None = None) -> None:
    """The head start's jobs hold their slots: other runs of the home may go on (atomic EX → SH)."""
    path = lock_path(home)
    with _guard:
        if path in _exclusive:
            fcntl.lockf(_fd(path), fcntl.LOCK_SH)
            _exclusive.discard(path)


def holds_exclusive(home: Path | None = None) -> bool:
    return lock_path(home) in _exclusive


@contextmanager
def run_holding(home: Path | None = None, on_wait=lambda: None):
    """Hold the home's lock shared while a run may take node slots (released at the end).

    Waits while another process's head start holds it exclusively (``on_wait`` is called
    once, then). In this process's own head start, the lock stays exclusive until
    :func:`share_now`. A home whose lock file cannot be made (read-only) cannot host a
    head start either: the run goes on without."""
    path = lock_path(home)
    try:
        with _guard:
            fd = _fd(path)
    except OSError:
        yield
        return
    if path not in _exclusive:
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except OSError:
                if not told:
                    on_wait()
                    told = True
                time.sleep(POLL_S)
    try:
        yield
    finally:
        with _guard:
            _exclusive.discard(path)
            fcntl.lockf(fd, fcntl.LOCK_UN)
