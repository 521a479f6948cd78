"""This machine's MS locks: one holder at a time, freed when released or when the holder dies."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from imgpipe.orchestration.ms_locks import LocalMsLocks, MsLockSet, Refused

from support.jobs import make_job


def job(*ms, name="j"):
    return make_job(None, ("wsclean",), tuple(ms), name=name)


def test_one_holder_at_a_time_and_the_holder_says_who(tmp_path):
    locks = LocalMsLocks(str(tmp_path))
    combined = job("/d/SW01.MS", "/d/SW02.MS", name="all")
    held = locks.try_lock(combined, "night 1")
    assert held is not None
    assert locks.try_lock(job("/d/SW02.MS/"), "night 2") is None  # the same MS, spelled otherwise
    assert locks.holder(job("/d/SW02.MS")).startswith(f"{combined.label} of run night 1 (pid ")
    other = locks.try_lock(job("/d/SW03.MS"), "night 2")
    assert other is not None
    locks.release(held)
    assert locks.try_lock(job("/d/SW02.MS"), "night 2") is not None


def test_a_refused_request_keeps_nothing(tmp_path):
    locks = LocalMsLocks(str(tmp_path))
    assert locks.try_lock(job("/d/SW02.MS"), "a") is not None
    assert locks.try_lock(job("/d/SW01.MS", "/d/SW02.MS"), "b") is None
    assert locks.try_lock(job("/d/SW01.MS"), "c") is not None  # SW01's lock was given back


def test_a_lock_dies_with_its_process(tmp_path):
    """A run killed with SIGKILL holds nothing: the kernel drops its flock."""
    code = (f"import sys, time; sys.path[:0] = {sys.path!r}\n"
            "from imgpipe.orchestration.ms_locks import LocalMsLocks\n"
            "from support.jobs import make_job\n"
            f"LocalMsLocks({str(tmp_path)!r}).try_lock(make_job(None, ('w',), ('/d/SW01.MS',)), 'killed')\n"
            "print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    locks = LocalMsLocks(str(tmp_path))
    assert locks.try_lock(job("/d/SW01.MS"), "next") is None
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while (held := locks.try_lock(job("/d/SW01.MS"), "next")) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held is not None


# -- a run's set of lock kinds --------------------------------------------------------------

class SlowLocks:
    """A stand-in for Prefect's MS limits (an API call each): records what happens."""

    instant = False

    def __init__(self, refuse: bool = False, fail: bool = False):
        self.refuse, self.fail = refuse, fail
        self.held: list[str] = []
        self.dropped: list[tuple[str, ...]] = []

    def try_lock(self, job, run):
        if self.fail:
            raise ConnectionError("server gone")
        if self.refuse:
            return None
        self.held.append(job.label)
        return job.label

    def holder(self, job):
        return "run elsewhere"

    def release(self, handle):
        self.held.remove(handle)

    def drop(self, ms_paths):
        self.dropped.append(ms_paths)


def test_a_lock_set_takes_every_kind_and_gives_them_back(tmp_path):
    local, slow = LocalMsLocks(str(tmp_path)), SlowLocks()
    locks = MsLockSet((local, slow), "night 1")
    assert not locks.instant
    held = locks.take(job("/d/SW01.MS"))
    assert isinstance(held, tuple) and [kind for kind, _ in held] == [local, slow] and slow.held
    assert local.try_lock(job("/d/SW01.MS"), "night 2") is None
    back = threading.Event()
    assert locks.release(held, ("/d/SW01.MS",), then=back.set) is False  # (the slow kind: in a thread)
    assert back.wait(5)
    locks.join(time.monotonic() + 5)
    assert not slow.held and slow.dropped == [("/d/SW01.MS",)]
    assert local.try_lock(job("/d/SW01.MS"), "night 2") is not None


def test_a_refusal_or_a_failure_keeps_no_lock(tmp_path):
    local = LocalMsLocks(str(tmp_path))
    refused = MsLockSet((local, SlowLocks(refuse=True)), "a").take(job("/d/SW01.MS"))
    assert refused == Refused("run elsewhere")
    with pytest.raises(ConnectionError):
        MsLockSet((local, SlowLocks(fail=True)), "a").take(job("/d/SW01.MS"))
    assert local.try_lock(job("/d/SW01.MS"), "b") is not None  # both gave this machine's lock back
    (tmp_path / "other").mkdir()
    only_here = MsLockSet((LocalMsLocks(str(tmp_path / "other")),), "c")
    assert only_here.instant and only_here.release(only_here.take(job("/d/SW01.MS")), ()) is True
