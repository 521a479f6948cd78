"""This machine's MS locks: one holder at a time, freed when released or when the holder dies."""

from __future__ import annotations

import subprocess
import sys
import time

from imgpipe.orchestration.ms_locks import LocalMsLocks

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
