"""Locks on Measurement Sets across imgpipe runs: a run images an MS only while no other does.

Why two kinds (:mod:`imgpipe.core.ms_sharing` says why MSs need locks at all):

- ``LocalMsLocks``: ``flock`` on a small file per MS in this machine's temp folder
  (``imgpipe-ms-locks-<uid>``), for every run started on this machine, whatever its
  Prefect server. Taking one costs microseconds and no database write (a Prefect call
  on the path of every job start meets the embedded server's SQLite busy with task
  states and can stall 2 s: measured), and the kernel frees it when its run dies, even
  on SIGKILL. The files stay (deleting a lock file another run has just opened would
  let a third in); they are empty, one per MS, in a temp folder.
- ``PrefectMsLocks``: a Prefect limit of 1 per MS (``NodeLimits.try_lock``), for runs
  on other machines that share a real ``prefect server``; taken after the local one.

Each ``try_lock`` returns a handle (release it when WSClean has ended) or None when
another run holds one of the MSs; ``holder`` says which run, when known.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time

from imgpipe.core.ms_sharing import ms_keys


def _lock_folder() -> str:
    folder = os.path.join(tempfile.gettempdir(), f"imgpipe-ms-locks-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


class LocalMsLocks:
    """``flock`` per MS on this machine (see the module docstring)."""

    instant = True
    """Taken in the dispatcher's own thread (no network, no waiting)."""

    def __init__(self, folder: str | None = None):
        self.folder = folder or _lock_folder()

    def _path(self, ms: str) -> str:
        return os.path.join(self.folder, hashlib.sha1(ms.encode()).hexdigest()[:20] + ".lock")

    def try_lock(self, job, run: str) -> list[int] | None:
        """Locks on every MS of ``job`` now (file descriptors), or None if another run holds one."""
        fds: list[int] = []
        for ms in ms_keys(job):
            fd = os.open(self._path(ms), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.release(fds)
                return None
            os.ftruncate(fd, 0)
            os.write(fd, f"{job.label} of run {run} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})".encode())
            fds.append(fd)
        return fds

    def holder(self, job) -> str | None:
        """Who holds the first of ``job``'s MSs that is held (what its holder wrote), if known."""
        for ms in ms_keys(job):
            try:
                with open(self._path(ms), encoding="utf-8", errors="replace") as f:
                    said = f.read().strip()
            except OSError:
                continue
            if said:
                return said
        return None

    @staticmethod
    def release(fds) -> None:
        for fd in fds or ():
            try:
                os.close(fd)  # (closing the only descriptor drops the flock)
            except OSError:
                pass


class PrefectMsLocks:
    """A Prefect limit per MS (``NodeLimits.try_lock``), for runs sharing a real ``prefect server``."""

    instant = False
    """An API call: taken in a thread of its own."""

    def __init__(self, limits):
        self._limits = limits

    def try_lock(self, job, run: str):
        return self._limits.try_lock(ms_keys(job))

    def holder(self, job) -> str | None:
        return None

    def release(self, lease) -> None:
        self._limits.release(lease)

    def drop(self, ms_paths) -> None:
        self._limits.drop_locks(ms_paths)
