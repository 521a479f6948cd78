"""At most max_concurrent jobs per node: the scheduler, and a real run that measures it."""

import os
import subprocess
import sys

import pytest

from imgpipe.core.scheduling import Queued, SlotScheduler

from support.jobs import make_job
from support.markers import requires_wsclean


def job(host, i):
    return make_job(host, ("wsclean", str(i)), (f"/{i}.MS",), name=f"i{i}")


def taken(pairs):
    return [(q.job, host) for q, host in pairs]


def test_scheduler_fills_free_slots_in_plan_order_per_node():
    jobs = [job("a", 0), job("a", 1), job("a", 2), job("b", 3), job("a", 4), job("b", 5)]
    sched = SlotScheduler(jobs, ["a", "b"], max_concurrent=2)
    first = taken(sched.take_ready())
    assert first == [(jobs[0], "a"), (jobs[1], "a"), (jobs[3], "b"), (jobs[5], "b")]  # a busy node does not hold back b
    assert sched.take_ready() == []
    sched.release("a")
    assert taken(sched.take_ready()) == [(jobs[2], "a")]
    sched.release("a")
    assert taken(sched.take_ready()) == [(jobs[4], "a")] and sched.pending == 0
    assert sched.running == {"a": 2, "b": 2}


def test_a_job_to_run_alone_reserves_the_emptiest_node_and_starts_when_it_is_empty():
    """A retry after running out of memory: its node takes no new job until it has drained,
    then runs it and nothing beside it; the other node goes on meanwhile."""
    jobs = [job(None, i) for i in range(8)]
    sched = SlotScheduler(jobs, ["a", "b"], max_concurrent=2)
    first = sched.take_ready()
    assert [h for _, h in first] == ["a", "b", "a", "b"]
    sched.release("b")  # jobs[1] ran out of memory on b: retried first, alone
    sched.requeue(first[1][0].retry(0.0, alone=True))
    assert sched.take_ready() == []  # b is kept for it at once, while its MS lock is still out
    sched.free_ms(jobs[1])  # (its lock is back)
    assert sched.take_ready() == []  # b is kept for the retry: nothing else goes there, a is full
    sched.release("a")
    assert taken(sched.take_ready()) == [(jobs[4], "a")]
    sched.release("b")  # b is empty now: the retry starts there, alone
    ready = sched.take_ready()
    assert [(q.job, h, q.alone, q.attempt) for q, h in ready] == [(jobs[1], "b", True, 2)]
    sched.release("a")
    assert taken(sched.take_ready()) == [(jobs[5], "a")]  # still not b: it runs the retry alone
    sched.release("b")  # the retry ended: b takes jobs again
    assert taken(sched.take_ready()) == [(jobs[6], "b"), (jobs[7], "b")]


def test_a_pinned_job_to_run_alone_waits_for_its_own_node():
    jobs = [job("a", 0), job("a", 1), job("a", 2)]
    sched = SlotScheduler(jobs, ["a"], max_concurrent=2)
    q0, _ = sched.take_ready()[0]
    sched.release("a")
    sched.free_ms(jobs[0])
    sched.requeue(q0.retry(0.0, alone=True))
    assert sched.take_ready() == []  # jobs[1] still runs; jobs[2] may not take the free slot
    sched.release("a")
    assert [q.job for q, _ in sched.take_ready()] == [jobs[0]]
    sched.release("a")
    assert [q.job for q, _ in sched.take_ready()] == [jobs[2]]


def test_pool_jobs_go_to_the_freest_node_the_moment_a_slot_frees():
    jobs = [job(None, i) for i in range(6)]
    sched = SlotScheduler(jobs, ["a", "b"], max_concurrent=2)
    assert [h for _, h in sched.take_ready()] == ["a", "b", "a", "b"]  # spread, not a then b
    sched.release("b")
    assert taken(sched.take_ready()) == [(jobs[4], "b")]
    assert sched.take_ready() == []
    sched.release("a")
    assert taken(sched.take_ready()) == [(jobs[5], "a")]


def test_blocked_down_and_retried_nodes():
    jobs = [job(None, 0), job("b", 1), job(None, 2)]
    sched = SlotScheduler(jobs, ["a", "b"], max_concurrent=1)
    sched.block("a", until=10.0)  # cooling down after a failed connection
    assert taken(sched.take_ready(now=5.0)) == [(jobs[0], "b")]
    assert sched.next_wakeup(5.0) == 5.0
    assert taken(sched.take_ready(now=10.0)) == [(jobs[2], "a")]
    # b goes down: the job pinned there is dropped (to be reported failed), pool jobs avoid it
    sched.release("b")
    sched.free_ms(jobs[0])  # (its task has finished: its MS is free again)
    assert [q.job for q in sched.mark_down("b")] == [jobs[1]]
    retry = Queued(jobs[0]).retry(not_before=20.0, avoid="a")
    sched.release("a")
    sched.requeue(retry)
    assert sched.take_ready(now=19.0) == [] and sched.next_wakeup(19.0) == 1.0
    assert taken(sched.take_ready(now=20.0)) == [(jobs[0], "a")]  # avoided only if another node is free
    assert retry.attempt == 2


def test_jobs_reading_a_common_ms_never_run_at_once_and_others_take_the_slot():
    """A composite SW and its member (--combine): the later waits for the MS, a job on
    other MSs takes the free slot meanwhile, and the wait is told once."""
    combined = make_job(None, ("wsclean", "all"), ("/d/SW01.MS", "/d/SW02.MS"), name="all")
    member = make_job(None, ("wsclean", "1"), ("/d/SW01.MS/",), name="sw1")  # the same MS, spelled otherwise
    other = make_job(None, ("wsclean", "3"), ("/d/SW03.MS",), name="sw3")
    sched = SlotScheduler([combined, member, other], ["a", "b"], max_concurrent=2)
    assert taken(sched.take_ready()) == [(combined, "a"), (other, "b")]
    assert [(j, os.path.basename(ms), h) for j, ms, h in sched.new_waits()] == [(member, "SW01.MS", combined)]
    sched.release("a")  # WSClean ended; its task still writes the record: the MS stays held
    assert sched.take_ready() == [] and sched.new_waits() == []
    sched.free_ms(combined)
    assert taken(sched.take_ready()) == [(member, "a")]


def test_a_job_given_back_frees_its_ms():
    first = make_job(None, ("wsclean", "1"), ("/d/SW01.MS",), name="a1")
    second = make_job(None, ("wsclean", "2"), ("/d/SW01.MS",), name="a2")
    sched = SlotScheduler([first, second], ["a"], max_concurrent=2)
    ((q, host),) = sched.take_ready()
    sched.give_back(q, host)  # it could not start (e.g. another run holds the MS)
    assert taken(sched.take_ready()) == [(first, "a")]


def test_a_refused_slot_keeps_the_jobs_place():
    jobs = [job(None, 0), job(None, 1)]
    sched = SlotScheduler(jobs, ["a"], max_concurrent=2)
    (q0, h0), (q1, h1) = sched.take_ready()
    sched.give_back(q1, h1)  # Prefect said: another run holds that slot
    sched.block("a", until=1.0)
    assert sched.take_ready(now=0.5) == [] and sched.pending == 1
    assert taken(sched.take_ready(now=1.0)) == [(jobs[1], "a")]


@requires_wsclean
@pytest.mark.prefect
def test_real_run_never_exceeds_max_concurrent(prefect_home, sim_dir, tmp_path):
    """Six 1-second jobs, max_concurrent = 2: the measured overlap is exactly 2."""
    fake = tmp_path / "fakews"
    times = tmp_path / "times"
    fake.write_text(f'#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\necho "start $(date +%s.%N)" >> "{times}"\nsleep 1\necho "end $(date +%s.%N)" >> "{times}"\n')
    fake.chmod(0o755)
    ms = []
    for i in range(6):
        path = tmp_path / f"obs{i}.MS"
        path.mkdir()
        ms.append(str(path))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[worker]\nmax_concurrent = 2\nwsclean = '{fake}'\n[wsclean]\nname = 'i'\nout-dir = 'out/$ms_basename$'\n")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "XDG_CACHE_HOME": str(tmp_path), "CI": "true"}
    res = subprocess.run([sys.executable, "-m", "imgpipe", str(cfg), *ms], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    events = sorted((float(t), kind) for kind, t in (line.split() for line in times.read_text().splitlines()))
    assert sum(kind == "start" for _, kind in events) == 6
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2


def test_jobs_are_admitted_by_the_cores_and_memory_they_need():
    """A node of 16 cores and 60 GiB usable: a 40 GiB job and small 8 GiB ones share it as
    they fit; max_concurrent stays the upper bound."""
    big, smalls = job("a", 0), [job("a", i) for i in range(1, 7)]
    need = {id(big): (8, 40 * 1024), **{id(s): (2, 8 * 1024) for s in smalls}}
    sched = SlotScheduler([big, *smalls], ["a"], max_concurrent=4, capacity={"a": (16, 60 * 1024)},
                          demand=lambda j, host: need[id(j)])
    assert taken(sched.take_ready()) == [(big, "a"), (smalls[0], "a"), (smalls[1], "a")]  # 56 GiB: a third small would not fit
    sched.release("a", smalls[0])
    assert taken(sched.take_ready()) == [(smalls[2], "a")]
    sched.release("a", big)  # 16 GiB held, 2 slots free: two more; then the slots (4) hold back the rest
    assert taken(sched.take_ready()) == [(smalls[3], "a"), (smalls[4], "a")] and sched.running["a"] == 4


def test_cores_count_too():
    a, b = job("n", 0), job("n", 1)
    sched = SlotScheduler([a, b], ["n"], max_concurrent=4, capacity={"n": (8, 10**6)}, demand=lambda j, h: (6, 1))
    assert taken(sched.take_ready()) == [(a, "n")]


def test_a_job_too_big_to_share_waits_until_it_fits_and_one_too_big_for_the_node_runs_alone():
    a, b, huge = job("n", 0), job("n", 1), job("n", 2)
    need = {id(a): (1, 30), id(b): (1, 30), id(huge): (1, 500)}
    sched = SlotScheduler([a, b, huge], ["n"], max_concurrent=4, capacity={"n": (4, 100)}, demand=lambda j, h: need[id(j)])
    assert taken(sched.take_ready()) == [(a, "n"), (b, "n")]  # huge does not fit beside them
    sched.release("n", a)
    assert sched.take_ready() == []
    sched.release("n", b)
    assert taken(sched.take_ready()) == [(huge, "n")]  # alone on an empty node, rather than never


def test_pool_jobs_go_where_they_fit():
    jobs = [job(None, i) for i in range(3)]
    need = {id(jobs[0]): (1, 60), id(jobs[1]): (1, 60), id(jobs[2]): (1, 30)}
    sched = SlotScheduler(jobs, ["small", "big"], max_concurrent=4, capacity={"small": (4, 70), "big": (4, 100)},
                          demand=lambda j, h: need[id(j)])
    placed = {q.job.name: h for q, h in sched.take_ready()}
    # the freest node first (slots, then memory left): i0 on big (100 > 70), i1 on small
    # (free slots), and i2 fits only beside the 60 on big
    assert placed == {"i0": "big", "i1": "small", "i2": "big"}
    assert sched.fits(jobs[2], "small") is False


def test_a_big_queue_costs_one_look_per_node_not_per_job_and_node(monkeypatch):
    """5 000 pool jobs on 24 nodes × 4 slots: once every slot is taken, a call looks at each
    node's free slots once (was once per job and node: 120 000 looks per event, which made a
    5 000-job night start ~2 jobs/s, benchmark 12), and not at all while nothing changed; a
    freed slot still goes to the first job."""
    pool = [f"node{n}" for n in range(24)]
    jobs = [job(None, i) for i in range(5000)]
    sched = SlotScheduler(jobs, pool, max_concurrent=4)
    first = taken(sched.take_ready())
    assert len(first) == 96 and first[0] == (jobs[0], "node0") and {h for _, h in first} == set(pool)
    looks = []
    original = SlotScheduler._free
    monkeypatch.setattr(SlotScheduler, "_free", lambda self, host, now: looks.append(host) or original(self, host, now))
    assert sched.take_ready() == []
    assert len(looks) == len(pool)
    assert sched.take_ready() == [] and len(looks) == len(pool)  # nothing changed since: not looked again
    sched.release("node7")
    looks.clear()
    assert taken(sched.take_ready()) == [(jobs[96], "node7")]
    assert len(looks) == len(pool) + 1  # (and once more for the node it just filled)
    assert sched.pending == 5000 - 97
