"""The dispatcher's decisions: retries, cool-down, slots held in Prefect, passed between jobs.

The jobs here are scripted outcomes (no process, no Prefect): what is under test is the
loop's bookkeeping; real runs are in test_ssh.py and test_scheduling.py.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from imgpipe.core import events
from imgpipe.core.config import WorkerConfig
from imgpipe.core.plan import Plan
from imgpipe.core.results import FAILED, OK, JobResult
from imgpipe.orchestration.dispatcher import JOB_ENDED, Dispatcher

from support.jobs import make_job


def job(i, host=None):
    return make_job(host, ("wsclean", str(i)), (f"/d/{i}.MS",), name=f"j{i}")


class Limits:
    """Prefect's node slots, in memory: ``refuse`` holds slots taken by 'another run'."""

    def __init__(self, limit, refuse=None):
        self.limit, self.held, self.calls = limit, {}, []
        self.refuse = dict(refuse or {})
        self.lock = threading.Lock()

    def try_acquire(self, host):
        with self.lock:
            self.calls.append(("acquire", host))
            used = sum(1 for h in self.held.values() if h == host) + self.refuse.get(host, 0)
            if used >= self.limit:
                return None
            lease = object()
            self.held[lease] = host
            return lease

    def try_acquire_slots(self, host, slots):
        with self.lock:
            self.calls.append(("acquire", host, slots))
            used = sum(1 for h in self.held.values() if h == host) + self.refuse.get(host, 0)
            if used + slots > self.limit:
                return None
            leases = [object() for _ in range(slots)]
            self.held.update((lease, host) for lease in leases)
            return leases

    def release(self, lease):
        with self.lock:
            self.calls.append(("release", self.held.pop(lease)))


class TaskFuture(Future):
    """Like a Prefect future: ``wait()`` until the task's state is final."""

    def wait(self, timeout=None):
        try:
            self.exception(timeout)
        except TimeoutError:
            pass

    @property
    def state(self):
        future = self

        class State:
            def is_final(self):
                return future.done()

        return State()


def run(plan, worker, outcomes, limits):
    """Run the dispatcher; ``outcomes(job, attempt)`` gives each attempt's JobResult."""
    attempts = []

    def start(j, attempt, sid):
        attempts.append((j.ms[0], j.host, attempt))
        future = TaskFuture()

        def body():
            result = outcomes(j, attempt)
            events.emit(JOB_ENDED, (sid, result))
            future.set_result(result)

        threading.Thread(target=body).start()
        return future

    results = Dispatcher(plan, worker, start, lambda j, f: f.result(), limits, logging.getLogger("t")).run({})
    return results, attempts


def ok(j, attempt):
    return JobResult(j, OK, exit_code=0, started_at=1.0, ended_at=2.0, pid=100)


def test_a_job_that_never_started_is_retried_on_another_node():
    plan = Plan((job(0), job(1)), pool=("a", "b"))
    worker = WorkerConfig(nodes=("a", "b"), max_concurrent=1, retries=2, retry_delay=0.01, host_cooldown=5)

    def outcomes(j, attempt):
        if j.host == "a":
            return JobResult(j, FAILED, "a: connection refused", connection_error=True)
        return ok(j, attempt)

    results, attempts = run(plan, worker, outcomes, Limits(1))
    assert [r.status for r in results] == [OK, OK]
    assert [r.job.host for r in results] == ["b", "b"]
    assert ("/d/0.MS", "a", 1) in attempts and ("/d/0.MS", "b", 2) in attempts
    assert results[0].attempt == 2


def test_a_job_that_started_and_lost_its_connection_is_never_retried():
    plan = Plan((job(0, "a"),), pool=("a",))
    worker = WorkerConfig(nodes=("a",), retries=5, retry_delay=0.01)

    def lost(j, attempt):
        return JobResult(j, FAILED, "a: connection lost while WSClean was running", connection_error=True, pid=42)

    results, attempts = run(plan, worker, lost, Limits(4))
    assert len(attempts) == 1 and results[0].status == FAILED and results[0].attempt == 1


def test_wsclean_errors_are_retried_only_when_asked():
    plan = Plan((job(0, "a"),), pool=("a",))

    def fails(j, attempt):
        return JobResult(j, FAILED, "exit code 1", exit_code=1, pid=7)

    worker = WorkerConfig(nodes=("a",), retries=2, retry_delay=0.01)
    assert len(run(plan, worker, fails, Limits(4))[1]) == 1
    worker = WorkerConfig(nodes=("a",), retries=2, retry_delay=0.01, retry_failed_jobs=True)
    results, attempts = run(plan, worker, fails, Limits(4))
    assert [a[2] for a in attempts] == [1, 2, 3] and results[0].attempt == 3 and results[0].status == FAILED


def test_slots_pass_from_job_to_job_and_go_back_to_prefect_at_the_end():
    plan = Plan(tuple(job(i) for i in range(6)), pool=("a",))
    worker = WorkerConfig(nodes=("a",), max_concurrent=2)
    limits = Limits(2)
    results, _ = run(plan, worker, ok, limits)
    assert all(r.ok for r in results)
    acquires = [c for c in limits.calls if c[0] == "acquire"]
    assert acquires == [("acquire", "a", 2)]  # six jobs, two slots taken from Prefect once, in one request
    assert limits.held == {}  # all given back


def test_the_first_slots_are_asked_for_one_request_per_node_before_any_job():
    plan = Plan(tuple(job(i) for i in range(9)), pool=("a", "b", "c"))
    worker = WorkerConfig(nodes=("a", "b", "c"), max_concurrent=2)
    limits = Limits(2)
    results, _ = run(plan, worker, ok, limits)
    assert all(r.ok for r in results) and limits.held == {}
    assert [c for c in limits.calls if c[0] == "acquire"] == [("acquire", "a", 2), ("acquire", "b", 2), ("acquire", "c", 2)]
    # fewer jobs than slots: only what they need, asked for as they start
    limits = Limits(2)
    results, _ = run(Plan(tuple(job(i) for i in range(3)), pool=("a", "b", "c")), worker, ok, limits)
    assert all(r.ok for r in results) and limits.held == {}
    assert sorted(c for c in limits.calls if c[0] == "acquire") == [("acquire", "a"), ("acquire", "b"), ("acquire", "c")]
    # a node whose slots another run holds: refused at first, then asked slot by slot
    limits = Limits(2, refuse={"a": 1})
    results, attempts = run(plan, worker, ok, limits)
    assert all(r.ok for r in results) and ("acquire", "a", 2) in limits.calls and ("acquire", "a") in limits.calls


def test_slots_held_by_another_run_are_respected():
    """'a' has both its slots taken elsewhere: everything runs on 'b', within its cap."""
    plan = Plan(tuple(job(i) for i in range(4)), pool=("a", "b"))
    worker = WorkerConfig(nodes=("a", "b"), max_concurrent=2)
    running, peak = [0], [0]
    lock = threading.Lock()

    def outcome(j, attempt):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        import time

        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return ok(j, attempt)

    results, attempts = run(plan, worker, outcome, Limits(2, refuse={"a": 2}))
    assert all(r.ok for r in results) and {h for _, h, _ in attempts} == {"b"} and peak[0] <= 2


def test_a_slow_refusal_does_not_stall_the_run():
    """Regression: a refused slot request that takes longer than the re-check delay (the
    embedded Prefect server can stall 2 s) once left the loop asleep for good."""
    import time

    plan = Plan((job(0), job(1)), pool=("a",))
    worker = WorkerConfig(nodes=("a",), max_concurrent=2)

    class SlowBusyLimits(Limits):
        def __init__(self):
            super().__init__(2, refuse={"a": 2})
            self.free_at = time.monotonic() + 0.8  # the other run ends then

        def try_acquire(self, host):
            time.sleep(0.3)
            if time.monotonic() > self.free_at:
                self.refuse = {}
            return super().try_acquire(host)

    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", run(plan, worker, ok, SlowBusyLimits())))
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the dispatcher hung"
    assert all(r.ok for r in out["r"][0])


def test_a_job_whose_start_was_under_way_is_not_retried():
    """Connection lost after the command was sent, before WSClean was seen to start: it may
    be running, so a retry could make two copies write the same images."""
    from imgpipe.orchestration.dispatcher import retry_reason

    worker = WorkerConfig(retries=3)
    never = JobResult(job(0, "a"), FAILED, "a: connection refused", connection_error=True)
    maybe = JobResult(job(0, "a"), FAILED, "a: connection lost while starting WSClean", connection_error=True, maybe_started=True)
    assert retry_reason(never, worker, 1) and retry_reason(maybe, worker, 1) is None


def test_a_failing_slot_request_is_asked_again_and_does_not_end_the_run(monkeypatch, caplog):
    """Before: one unexpected HTTP error on a slot request raised out of the loop and
    cancelled every running job."""
    from imgpipe.orchestration import dispatcher

    monkeypatch.setattr(dispatcher, "SLOT_ERROR_BACKOFF_S", (0.01, 0.02))
    plan = Plan((job(0, "a"), job(1, "b")), pool=("a", "b"))
    worker = WorkerConfig(nodes=("a", "b"), max_concurrent=1)

    class FlakyLimits(Limits):
        failures = 1

        def try_acquire(self, host):
            if host == "a" and self.failures:
                self.failures -= 1
                raise RuntimeError("HTTP 500 from the Prefect API")
            return super().try_acquire(host)

    with caplog.at_level(logging.WARNING, logger="t"):
        results, attempts = run(plan, worker, ok, FlakyLimits(1))
    assert [r.status for r in results] == [OK, OK]
    assert "a: slot request to Prefect failed (RuntimeError: HTTP 500 from the Prefect API); asking again in 0.01 s" in caplog.text


def test_a_node_whose_slot_requests_keep_failing_fails_only_its_own_jobs(monkeypatch):
    from imgpipe.orchestration import dispatcher

    monkeypatch.setattr(dispatcher, "SLOT_ERROR_BACKOFF_S", (0.01, 0.01, 0.01))
    plan = Plan((job(0, "a"), job(1, "b"), job(2, "a")), pool=("a", "b"))
    worker = WorkerConfig(nodes=("a", "b"), max_concurrent=1)

    class BrokenForA(Limits):
        def try_acquire(self, host):
            if host == "a":
                raise RuntimeError("HTTP 500")
            return super().try_acquire(host)

    results, attempts = run(plan, worker, ok, BrokenForA(1))
    assert [r.status for r in results] == [FAILED, OK, FAILED]
    assert results[0].reason == "no node slot from Prefect for a: RuntimeError: HTTP 500"
    assert {h for _, h, _ in attempts} == {"b"}  # nothing was started on 'a'


def test_every_slot_is_back_in_prefect_when_the_run_returns():
    """Slot releases run in threads; before, the run could return (and NodeLimits.close()
    run) while some were still under way."""
    import time

    class SlowRelease(Limits):
        def release(self, lease):
            time.sleep(0.2)
            super().release(lease)

    limits = SlowRelease(2)
    results, _ = run(Plan(tuple(job(i) for i in range(3)), pool=("a", "b")), WorkerConfig(nodes=("a", "b"), max_concurrent=2), ok, limits)
    assert all(r.ok for r in results)
    assert limits.held == {}  # immediately, not "eventually"


class HeldByAnotherRun:
    """MS locks as this machine's: ``taken`` MSs are held by 'another run' until freed."""

    instant = True

    def __init__(self, taken=()):
        self.taken, self.ours = set(taken), set()
        self.lock = threading.Lock()

    def try_lock(self, j, run):
        with self.lock:
            if (set(j.ms) & self.taken) or (set(j.ms) & self.ours):
                return None
            self.ours |= set(j.ms)
            return tuple(j.ms)

    def holder(self, j):
        return "SW01 of run other (pid 1)" if set(j.ms) & self.taken else None

    def release(self, handle):
        with self.lock:
            self.ours -= set(handle)


def test_a_job_whose_ms_another_run_holds_waits_and_its_slot_goes_to_another_job(caplog):
    plan = Plan((make_job(None, ("wsclean", "x"), ("/d/X.MS",), name="x"), job(1)), pool=("a",))
    worker = WorkerConfig(nodes=("a",), max_concurrent=1)
    locks = HeldByAnotherRun(taken={"/d/X.MS"})
    threading.Timer(0.5, lambda: locks.taken.clear()).start()  # the other run's job ends
    attempts = []

    def start(j, attempt, sid):
        attempts.append(j.ms[0])
        future = TaskFuture()
        threading.Thread(target=lambda: (events.emit(JOB_ENDED, (sid, ok(j, attempt))), future.set_result(ok(j, attempt)))).start()
        return future

    with caplog.at_level(logging.INFO, logger="t"):
        results = Dispatcher(plan, worker, start, lambda j, f: f.result(), Limits(1), logging.getLogger("t"),
                             (locks,), "this run").run({})
    assert all(r.ok for r in results) and attempts == ["/d/1.MS", "/d/X.MS"]
    assert "X.MS, in use by another imgpipe run (SW01 of run other (pid 1))" in caplog.text
    assert locks.ours == set()  # every lock given back


def test_the_next_job_on_an_ms_starts_when_wsclean_ends_not_when_the_task_does():
    """Two jobs of one run on the same MS: the second starts while the first's task still
    measures its image (its locks went back with its node slot)."""
    plan = Plan(tuple(make_job(None, ("wsclean", str(i)), ("/d/X.MS",), name=f"x{i}") for i in range(2)), pool=("a",))
    worker = WorkerConfig(nodes=("a",), max_concurrent=2)
    locks = HeldByAnotherRun()
    started, finished = [], []

    def start(j, attempt, sid):
        started.append((j.argv[1], len(finished)))
        future = TaskFuture()

        def body():
            events.emit(JOB_ENDED, (sid, ok(j, attempt)))  # WSClean has ended
            import time

            time.sleep(0.5)  # image statistics, quick-look, record
            finished.append(j.argv[1])
            future.set_result(ok(j, attempt))

        threading.Thread(target=body).start()
        return future

    results = Dispatcher(plan, worker, start, lambda j, f: f.result(), Limits(2), logging.getLogger("t"), (locks,)).run({})
    assert all(r.ok for r in results)
    assert started == [("0", 0), ("1", 0)]  # the second began before the first's task had finished


def test_a_dead_node_costs_the_run_at_most_node_give_up(caplog):
    """Six jobs pinned to a dead node, six to a good one: jobs failing together while the
    node cools down count once (the cool-down no longer doubles per failed job), the node
    gets a last try at node_give_up after its first failure, then its jobs fail at once
    with the reason; every retry line states the real wait."""
    import re
    import time

    plan = Plan(tuple(job(i, "dead" if i % 2 else "good") for i in range(12)), pool=("dead", "good"))
    worker = WorkerConfig(nodes=("dead", "good"), max_concurrent=3, retries=2, retry_delay=0.01,
                          host_cooldown=0.1, node_give_up=0.6)

    def outcomes(j, attempt):
        if j.host == "dead":
            time.sleep(0.02)
            return JobResult(j, FAILED, "dead: connection refused", connection_error=True)
        return ok(j, attempt)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        results, attempts = run(plan, worker, outcomes, Limits(3))
    took = time.monotonic() - started
    assert took < 0.6 + 0.5, took  # node_give_up and a last try, not minutes of doubled cool-downs
    assert [r.status for r in results] == [OK, FAILED] * 6
    dead = [r for r in results if r.status == FAILED]
    # each failed with its reason: out of attempts, or its node given up
    assert all(r.reason.startswith("dead: connection refused") for r in dead), [r.reason for r in dead]
    assert any("node dead given up: unreachable for" in r.reason and "node_give_up = 0.6 s" in r.reason
               for r in dead), [r.reason for r in dead]
    cool_downs = [float(x) for x in re.findall(r"dead: no new job there for ([\d.]+) s", caplog.text)]
    # doubling per try (0.1, 0.2, 0.4) cut at give-up, never per failed job (up to 5 min)
    assert cool_downs and max(cool_downs) <= 0.6 and len(cool_downs) <= 4, cool_downs
    for wait in re.findall(r"retry j\d+ @ dead \(attempt \d of 3 in ([\d.]+) s\)", caplog.text):
        assert float(wait) >= 0.01  # the node's cool-down, not only retry_delay
    assert "given up" in caplog.text


def test_a_job_whose_wsclean_ended_ok_just_before_a_stop_is_ok():
    """Issue 45: 5. Job 0's WSClean ends ok and its task is still making its statistics when
    Ctrl-C comes (a real quick-look takes ~1.5 s); job 1 is still running. The stopped run's
    word: job 0 ok, with its task's result; job 1 cancelled (was: both cancelled)."""
    import _thread
    import time

    from imgpipe.core.results import CANCELLED

    plan = Plan((job(0, "a"), job(1, "a")), pool=("a",))
    worker = WorkerConfig(nodes=("a",), max_concurrent=2)
    stop = threading.Event()

    def start(j, attempt, sid):
        future = TaskFuture()

        def body():
            if j.ms[0] == "/d/1.MS":
                stop.wait(10)
                return
            result = ok(j, attempt)
            events.emit(JOB_ENDED, (sid, result))
            time.sleep(0.3)  # (the dispatcher takes the 'ended' word meanwhile)
            _thread.interrupt_main()  # Ctrl-C, while this task makes its statistics
            time.sleep(0.5)
            future.set_result(JobResult(j, OK, exit_code=0, started_at=1.0, ended_at=2.0, pid=100, image="j0-image.fits"))

        threading.Thread(target=body, daemon=True).start()
        return future

    dispatcher = Dispatcher(plan, worker, start, lambda j, f: f.result(), Limits(2), logging.getLogger("t"))
    try:
        dispatcher.run({})
    except KeyboardInterrupt:
        results = dispatcher.partial_results("Ctrl-C", wait_s=1.5)
    else:
        raise AssertionError("the run was not interrupted")
    finally:
        stop.set()
    assert [r.status for r in results] == [OK, CANCELLED]
    assert results[0].image == "j0-image.fits" and results[1].reason == "cancelled by Ctrl-C"
