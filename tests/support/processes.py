"""Processes as the tests look at them."""

import time


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout_s: float = 10.0, every_s: float = 0.05) -> bool:
    """True as soon as ``predicate()`` is; False if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return False


def _status_mib(pid: int, field: str) -> float | None:
    try:
        return next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith(field)) / 1024.0
    except (OSError, StopIteration):
        return None


def rss_mib(pid: int) -> float | None:
    """The process's resident memory (VmRSS) in MiB; None once it is gone."""
    return _status_mib(pid, "VmRSS:")


def peak_rss_mib(pid: int) -> float | None:
    """The process's own peak resident memory so far (VmHWM) in MiB; None once it is gone.

    Why not wait4's ru_maxrss: Linux counts there the largest of the process and of every
    descendant it reaped, so a run with an embedded Prefect server (a child) reports the
    server's peak when it is the larger one."""
    return _status_mib(pid, "VmHWM:")
