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
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from imgpipe.core.ms_sharing import ms_keys
from imgpipe.core.plan import Job


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

    def drop(self, ms_paths: tuple[str, ...]) -> None:
        """Nothing: the lock files stay (see the module docstring)."""

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


class MsLock(Protocol):
    """One kind of MS lock (``LocalMsLocks``, ``PrefectMsLocks``)."""

    instant: bool

    def try_lock(self, job: Job, run: str) -> Any: ...

    def holder(self, job: Job) -> str | None: ...

    def release(self, handle: Any) -> None: ...

    def drop(self, ms_paths: tuple[str, ...]) -> None: ...


@dataclass(frozen=True)
class Refused:
    """Another run holds an MS of the job (``holder``: what it says of itself, if known)."""

    holder: str | None = None


HeldLocks = tuple[tuple[MsLock, Any], ...]
"""The locks of one job: (kind, handle) pairs, in the order they were taken."""


class MsLockSet:
    """The MS locks of one run, every kind taken in order for each job and given back
    when its WSClean has ended; the slow kinds (an API call) are given back in threads,
    joined before the run returns."""

    def __init__(self, kinds: tuple[MsLock, ...], run: str):
        self.kinds, self.run = kinds, run
        self.instant = all(kind.instant for kind in kinds)
        """Every kind is taken without waiting (no API call): in the dispatcher's own thread."""
        self._releases: list[threading.Thread] = []

    def take(self, job: Job) -> HeldLocks | Refused:
        """Every lock on ``job``'s MSs, or Refused (those taken are given back); a lock
        that fails raises, those taken given back."""
        taken: list[tuple[MsLock, Any]] = []
        for kind in self.kinds:
            try:
                handle = kind.try_lock(job, self.run)
            except Exception:
                self.release(tuple(taken), ())
                raise
            if handle is None:
                holder = kind.holder(job)
                self.release(tuple(taken), ())
                return Refused(holder)
            taken.append((kind, handle))
        return tuple(taken)

    def release(self, held: HeldLocks, done_with: tuple[str, ...], then: Callable[[], None] | None = None) -> bool:
        """Give ``held`` back: True if done now; else (an API call) in a thread, which calls
        ``then`` once they are back. ``done_with``: MSs no later job of this run needs
        (their Prefect limits are deleted)."""
        for kind, handle in held:
            if kind.instant:
                kind.release(handle)
        slow = [(kind, handle) for kind, handle in held if not kind.instant]
        if not slow:
            return True

        def release() -> None:
            for kind, handle in slow:
                kind.release(handle)
            if then is not None:
                then()
            if done_with:
                for kind, _ in slow:
                    kind.drop(done_with)

        thread = threading.Thread(target=release, daemon=True)
        thread.start()
        self._releases = [t for t in self._releases if t.is_alive()] + [thread]
        return False

    def join(self, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for the releases still under way."""
        for thread in self._releases:
            thread.join(max(0.0, deadline - time.monotonic()))
