"""The flow's job loop: start each job the moment a node has a slot, retry what may be retried.

Why a loop of our own rather than submitting every task at once: a job should hold a
node slot and show as Running only while WSClean runs, pool jobs should go to
whichever node frees first, and a retry may go to another node.

Why it is fast: a freed slot is refilled without waiting for Prefect.
- The task reports "WSClean ended" straight to this loop (an in-process event) the
  moment the process ends, and the slot goes to the next job; the job's result is
  taken when the task has finished (image statistics, provenance) and Prefect has
  recorded its state. (A task on a Dask worker runs in another process: its slot is
  freed when its future is done instead.)
- A node slot held in Prefect (``NodeLimits``) passes from the job that ended to the
  next job on that node without an API call; only slots no job of this run can use
  go back to Prefect (other runs may take them then). So within a run a slot is
  refilled in milliseconds, and across runs the per-node cap still holds.

One job per MS at a time: the scheduler holds back a job whose MS another job of this
run holds, and locks per MS (``ms_locks``: this machine's, and Prefect's for runs on
other machines) keep other runs off it; a job refused a lock goes back to the queue
(asked again after a growing delay), its node slot to the next job. The locks are
given back the moment WSClean has ended (with the node slot, before the image
statistics); once they are back, the next job of this run on that MS may start.

Retry rules (as the original imgpipe's worker pool): a job is tried again only if its
command never reached the node (connection refused or timed out, channel refused), up
to ``retries`` times after ``retry_delay``, preferably on another node; a node
that failed a connection gets no new job for ``host_cooldown`` while another node
can take it. A WSClean error is retried only with ``retry_failed_jobs``. A job whose
connection was lost once its command was sent (WSClean running or starting) is never
retried: the node kills it, but a second copy could otherwise write the same images
meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable

from imgpipe.core import events
from imgpipe.core.config import WorkerConfig
from imgpipe.core.errors import InputError
from imgpipe.core.job_order import LARGEST_FIRST, largest_first
from imgpipe.core.job_resources import Capacity, demand, fits_nowhere, usable_mb
from imgpipe.core.job_resources import alone as run_alone
from imgpipe.core.ms_sharing import ms_keys
from imgpipe.core.plan import Job, Plan
from imgpipe.core.results import CANCELLED, FAILED, JobResult
from imgpipe.core.scheduling import Queued, SlotScheduler
from imgpipe.facts.ms_sizes import ms_sizes
from imgpipe.orchestration.ms_locks import HeldLocks, MsLock, MsLockSet, Refused
from imgpipe.orchestration.node_slots import NodeSlots, SlotSource

log = logging.getLogger(__name__)  # its DEBUG lines: [worker] debug = true

BUSY_RECHECK_S = 0.2
"""How soon to ask Prefect again for a node whose slots another run holds."""

IDLE_RECHECK_S = 1.0
"""Longest sleep while jobs wait and no clock event is due (a safety net)."""

SLOT_ERROR_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0)
"""Waits after a slot request to Prefect failed (an HTTP error, a dropped connection),
one per failure in a row on that node; after the last, the node's waiting jobs fail."""

LOCK_RECHECK_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before asking again for an MS another run holds (the last one repeats)."""

STOPPED_WAIT_S = 12.0
"""How long a stopped run waits for its stopped jobs to report (their grace is 10 s)."""

RELEASE_JOIN_S = 10.0
"""How long the end of a run waits for slot releases still under way (then they expire)."""

JOB_ENDED = "job-ended"
"""Event emitted by the task, payload ``(submission id, JobResult)``."""


# -- what the loop's inbox receives, from other threads ---------------------------------

@dataclass(frozen=True)
class _Answered:
    """A slot request's answer (from its thread): ``lease`` is the slot, None (the node's
    slots are all held by other runs) or the request's error; ``locks``, asked only with
    a slot, the job's MS locks, a refusal or the error of a lock."""

    queued: Queued
    host: str
    lease: Any
    locks: HeldLocks | Refused | Exception = ()


@dataclass(frozen=True)
class _Ended:
    """A task says its WSClean has ended (it still finishes up: statistics, record)."""

    sid: str
    result: JobResult


@dataclass(frozen=True)
class _Done:
    """A task's future is done."""

    sid: str


@dataclass(frozen=True)
class _Unlocked:
    """The MS locks of ``job`` (as queued) given back in a thread are back."""

    job: Job


_Message = _Answered | _Ended | _Done | _Unlocked


@dataclass
class _Submission:
    queued: Queued
    job: Job
    """As placed on its node."""
    host: str
    lease: Any
    future: Any = None
    """Its task's Prefect future."""
    slot_freed: bool = False
    handled: bool = False
    ended: JobResult | None = None
    """What its task said when WSClean ended (the task then finishes up: statistics, record)."""
    locks: HeldLocks = ()


class Dispatcher:
    """Runs the jobs of one plan. ``start(job, attempt, submission_id)`` submits a job's task
    and returns its future; ``outcome(job, future)`` reads a finished future as a JobResult
    (used only when the task died before reporting); ``limits`` holds node slots in Prefect."""

    def __init__(self, plan: Plan, worker: WorkerConfig, start: Callable[[Job, int, str], Any],
                 outcome: Callable[[Job, Any], JobResult], limits: SlotSource,
                 logger: logging.Logger | logging.LoggerAdapter, ms_locks: tuple[MsLock, ...] = (), run: str = "",
                 capacity: Callable[[str], Capacity | None] | None = None):
        """``capacity``: node → its Capacity, where known (``RunBackends.capacity``): jobs are
        then admitted there by the cores and memory they need (``core.scheduling``)."""
        self.plan, self.worker, self.logger = plan, worker, logger
        self._start, self._outcome = start, outcome
        if capacity is not None and (why := fits_nowhere(plan.jobs, plan.pool, capacity)):
            raise InputError(why)
        sizes, needs = self.admission(plan, capacity)
        self.scheduler = SlotScheduler(self.start_order(plan, worker), plan.pool, worker.max_concurrent, sizes, needs)
        self._order = {id(job): i for i, job in enumerate(plan.jobs)}
        self.results: dict[int, JobResult] = {}
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self._subs: dict[str, _Submission] = {}
        self._unhandled = 0
        """Submissions not yet handled (a count: the loop asks for it at every event, and a
        night keeps thousands of submissions)."""
        self._slots = NodeSlots(limits)
        """The node slots this run holds in Prefect (their releases are joined before the run
        returns, so none races NodeLimits.close())."""
        self._given_up: dict[str, str] = {}
        """Nodes that failed every connection for ``node_give_up``, and why (their jobs' reason)."""
        self._locks = MsLockSet(tuple(ms_locks), run)
        """Locks on MSs across runs (``imgpipe.orchestration.ms_locks``), taken in this order."""
        self._lock_refusals: Counter[int] = Counter()
        """Lock requests refused in a row, per job (their wait grows)."""
        self._ms_jobs: Counter[str] = Counter()
        """Jobs of this run still to finish, per MS (at 0 its lock limit is deleted)."""

    @staticmethod
    def admission(plan: Plan, capacity: Callable[[str], Capacity | None] | None) -> tuple[Any, Any]:
        """(node → (cores, usable MiB), job demand) for the nodes whose size is known; (None, None)
        when no job asks for resources or no node's size is known."""
        if capacity is None or not any(job.ask is not None for job in plan.jobs):
            return None, None
        known = {h: c for h in plan.hosts() if (c := capacity(h)) is not None and c.mem_mb > 0}
        if not known:
            return None, None
        sizes = {h: (c.cores, usable_mb(c)) for h, c in known.items()}
        ms_bytes = ms_sizes(ms for job in plan.jobs if job.ask is not None for ms in job.ms)
        worked_out: dict[tuple[int, str], tuple[int, int] | None] = {}
        """(job, node) → its demand: asked for each waiting job each time a slot frees; the
        plan's jobs live as long as the run, so their ids stay theirs."""

        def needs(job: Job, host: str):
            key = (id(job), host)
            if key not in worked_out:
                worked_out[key] = demand(job, known[host], sum(ms_bytes.get(ms, 0) for ms in job.ms))
            return worked_out[key]

        return sizes, needs

    @staticmethod
    def start_order(plan: Plan, worker: WorkerConfig) -> list[Job]:
        """The order in which waiting jobs take free slots ([worker] order); sized only
        when some jobs must wait (when every job starts at once, order does not matter)."""
        if worker.order == LARGEST_FIRST and len(plan.jobs) > len(plan.hosts()) * worker.max_concurrent:
            return largest_first(plan.jobs, ms_sizes(ms for job in plan.jobs for ms in job.ms))
        return list(plan.jobs)

    # -- events from task threads ---------------------------------------------------
    def _on_event(self, event: str, payload: Any) -> None:
        if event == JOB_ENDED and payload[0] in self._subs:
            self._inbox.put(_Ended(*payload))

    # -- the loop ----------------------------------------------------------------------
    def run(self, down: dict[str, str], done_before: dict[int, JobResult] | None = None) -> list[JobResult]:
        """Run the plan; ``done_before`` maps plan indexes to results of jobs not to run (skipped, refused)."""
        for index, result in (done_before or {}).items():
            self.scheduler.remove(self.plan.jobs[index])
            self.results[index] = result
            events.emit("finished", result)
        for queued in self.scheduler.queued():
            self._ms_jobs.update(ms_keys(queued.job))
        for host, why in down.items():
            for queued in self.scheduler.mark_down(host):
                self._record(queued, JobResult(queued.job, FAILED, f"node unreachable: {why}", connection_error=True))
        events.subscribe(self._on_event)
        interrupted = False
        try:
            self._take_first_slots(down)  # (a node whose slots another run holds: the loop asks again)
            while self.scheduler.pending or self._in_flight() or self._slots.asking:
                self._start_ready()
                self._tell_waits()
                self._return_idle_leases()
                if not self.scheduler.pending and not self._in_flight() and not self._slots.asking:
                    break
                wakeup = self.scheduler.next_wakeup(time.monotonic())
                if wakeup is None and self.scheduler.pending and not self._slots.asking:
                    wakeup = IDLE_RECHECK_S  # never sleep for good while jobs wait
                try:
                    message = self._inbox.get(timeout=wakeup)
                except queue.Empty:
                    continue
                self._handle(message)
        except BaseException:
            interrupted = True  # (still listening: partial_results takes the stopped jobs' ends)
            raise
        finally:
            if not interrupted:
                events.unsubscribe(self._on_event)
            # Slot requests still out: take their answers briefly (NodeLimits.close() and the
            # 60-s lease expiry cover any later one), so that an interrupt still ends quickly.
            deadline = time.monotonic() + 2
            while self._slots.asking and time.monotonic() < deadline:
                try:
                    message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if isinstance(message, _Answered):
                    self._slots.asking -= 1
                    if isinstance(message.locks, tuple):
                        self._locks.release(message.locks, ())
                    if message.lease is not None and not isinstance(message.lease, Exception):
                        self._slots.park(message.host, message.lease)
            self._return_idle_leases(everything=True)
            deadline = time.monotonic() + RELEASE_JOIN_S
            self._slots.join(deadline)
            self._locks.join(deadline)
        for sub in self._subs.values():  # every task's final state is recorded before the flow ends
            sub.future.wait()
        return [self.results[i] for i in sorted(self.results)]

    def partial_results(self, who: str = "the interrupt", wait_s: float = STOPPED_WAIT_S) -> list[JobResult]:
        """Every job's outcome, for a run that was stopped (``who``: by what), once its
        running jobs were told to stop: each stopped job with its real wall and CPU time
        up to the stop (waiting up to ``wait_s`` for their tasks to say so, and to write
        their records), the others as not started."""
        running = {sid: sub for sid, sub in self._subs.items() if not sub.handled}
        ended: dict[str, JobResult] = {}
        deadline = time.monotonic() + wait_s
        while len(ended) < len(running) and time.monotonic() < deadline:
            try:
                message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(message, _Ended) and message.sid in running:
                ended[message.sid] = message.result
        events.unsubscribe(self._on_event)
        for sub in running.values():  # their tasks write the records meanwhile
            try:
                sub.future.wait(max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
        by_job = {id(sub.queued.job): self._last_word(sub, ended.get(sid) or sub.ended) for sid, sub in running.items()}
        out = []
        for i, job in enumerate(self.plan.jobs):
            if i in self.results:
                out.append(self.results[i])
            elif id(job) in by_job:
                result = by_job[id(job)]
                out.append(result if result.ok else replace(result, status=CANCELLED, reason=f"cancelled by {who}"))
            else:
                out.append(JobResult(job, CANCELLED, f"not started: the run was stopped by {who}"))
        return out

    def _last_word(self, sub: _Submission, ended: JobResult | None) -> JobResult:
        """A stopped run's word on a job that was running: its task's result if the task has
        finished (a job whose WSClean ended ok just before the stop is ok, with its
        statistics), else what it said when WSClean ended, else cancelled."""
        try:
            if sub.future is not None and sub.future.state.is_final():
                return self._outcome(sub.job, sub.future)
        except Exception:  # (a future that cannot say: the task's last word is used)
            pass
        return ended or JobResult(sub.job, CANCELLED, "")

    def _in_flight(self) -> int:
        return self._unhandled

    def _start_ready(self) -> None:
        """Start every job that has a slot: with a slot this run already holds at once,
        else after asking Prefect for one in the background (the embedded server can take
        seconds to answer, and meanwhile other nodes' slots must still be refilled)."""
        for queued, host in self.scheduler.take_ready(time.monotonic()):
            lease = self._slots.idle(host)
            if lease is not None and self._locks.instant:
                self._answered(_Answered(queued, host, lease, self._take_locks(queued.job)), counted=False)
            else:
                self._slots.asking += 1
                threading.Thread(target=self._acquire, args=(queued, host, lease), daemon=True).start()

    def _tell_waits(self) -> None:
        for job, ms, holder in self.scheduler.new_waits():
            self.logger.info("%s: waiting for %s, in use by %s", job.label, os.path.basename(ms), holder.label)

    def _take_first_slots(self, down: dict[str, str]) -> None:
        """Before the first job: the slots the run can fill at once, one request per node.

        Why: once task runs are being recorded, the embedded server's SQLite is busy and
        a slot request that meets those writes is answered "retry" after ~2 s; asked
        one slot at a time while the first jobs started, the last node got its first
        job 2-4 s after the first one (measured: 3 nodes × 2 slots, 2 cores). Asked
        first, one request per node, every slot starts within ~0.2 s. A node's
        first slots share one lease, given back to Prefect when the last of them is.
        """
        wants = {}
        for host in self.plan.hosts():
            if host not in down:
                can_run = sum(1 for q in self.scheduler.queued() if self._can_run_on(q.job, host))
                wants[host] = min(self.worker.max_concurrent, can_run)
        if sum(wants.values()) > self.scheduler.pending:
            return  # fewer jobs than slots: the loop asks for what they need
        self._slots.take_first(wants)

    def _take_locks(self, job: Job) -> HeldLocks | Refused | Exception:
        """Every lock on ``job``'s MSs; Refused if another run holds one, or the error of a
        lock that failed (those taken are given back either way)."""
        try:
            return self._locks.take(job)
        except Exception as err:  # reported in the loop's thread
            return err

    def _acquire(self, queued: Queued, host: str, lease: Any = None) -> None:
        """(In a thread.) A node slot if ``lease`` is None, then the locks on the job's MSs;
        the answer goes to the loop."""
        try:
            if lease is None:
                lease = self._slots.request(host)
        except Exception as err:  # reported in the loop's thread
            lease = err
        if lease is None or isinstance(lease, Exception):
            self._inbox.put(_Answered(queued, host, lease))
            return
        self._inbox.put(_Answered(queued, host, lease, self._take_locks(queued.job)))

    def _answered(self, answer: _Answered, counted: bool = True) -> None:
        if counted:
            self._slots.asking -= 1
        queued, host, lease, locks = answer.queued, answer.host, answer.lease, answer.locks
        if isinstance(lease, Exception):
            self._slot_request_failed(queued, host, lease)
            return
        if lease is None:  # another imgpipe run holds this node's slots: ask again soon
            self._slots.answered(host)
            log.debug("%s: its slots are held by another run; asking again in %g s", host, BUSY_RECHECK_S)
            self.scheduler.give_back(queued, host)
            self.scheduler.block(host, time.monotonic() + BUSY_RECHECK_S)
            return
        if isinstance(locks, Exception):
            self._slots.park(host, lease)
            self._slot_request_failed(queued, host, locks)
            return
        self._slots.answered(host)
        if isinstance(locks, Refused):  # another run images one of its MSs: the slot goes to another job
            self._slots.park(host, lease)
            refusals = self._lock_refusals[id(queued.job)] = self._lock_refusals[id(queued.job)] + 1
            if refusals == 1:
                names = ", ".join(os.path.basename(k) for k in ms_keys(queued.job))
                self.logger.info("%s: waiting for %s, in use by another imgpipe run%s", queued.job.label, names,
                                 f" ({locks.holder})" if locks.holder else "")
            wait = LOCK_RECHECK_S[min(refusals, len(LOCK_RECHECK_S)) - 1]
            self.scheduler.give_back(replace(queued, not_before=time.monotonic() + wait), host)
            return
        self._lock_refusals.pop(id(queued.job), None)
        self._submit(queued, host, lease, locks)

    def _slot_request_failed(self, queued: Queued, host: str, err: Exception) -> None:
        """Prefect did not answer a slot request (the job never started): ask again later,
        and give up on the node only when it keeps failing, not at the first error."""
        self.scheduler.give_back(queued, host)
        failures = self._slots.failed(host)
        why = f"{type(err).__name__}: {err}"
        if failures > len(SLOT_ERROR_BACKOFF_S):
            self.logger.error("%s: no node slot from Prefect after %d tries (%s): its waiting jobs fail", host, failures, why)
            for dropped in self.scheduler.mark_down(host):
                self._record(dropped, JobResult(dropped.job, FAILED, f"no node slot from Prefect for {host}: {why}"))
            return
        wait = SLOT_ERROR_BACKOFF_S[failures - 1]
        self.logger.warning("%s: slot request to Prefect failed (%s); asking again in %g s", host, why, wait)
        self.scheduler.block(host, time.monotonic() + wait)

    def _submit(self, queued: Queued, host: str, lease: Any, locks: HeldLocks = ()) -> None:
        sid = uuid.uuid4().hex
        job = replace(queued.job, host=host)
        if queued.alone:  # retried after it ran out of memory: the node's whole share
            job = run_alone(job)
        log.debug("start %s on %s (attempt %d, %d job(s) waiting)", job.label, host, queued.attempt, self.scheduler.pending)
        sub = self._subs[sid] = _Submission(queued, job, host, lease, locks=locks)
        self._unhandled += 1
        sub.future = self._start(job, queued.attempt, sid)
        sub.future.add_done_callback(lambda f, sid=sid: self._inbox.put(_Done(sid)))

    def _return_idle_leases(self, everything: bool = False) -> None:
        """Give back to Prefect the slots no pending job of this run can use now."""
        self._slots.give_back(lambda host, idle: 0 if everything else self._waiting_for(host, at_most=idle))

    def _waiting_for(self, host: str, at_most: int) -> int:
        """Pending jobs that could start on ``host`` now, counted up to ``at_most`` (the leases
        held there: with thousands of jobs queued, the first few answer)."""
        now = time.monotonic()
        count = 0
        for q in self.scheduler.waiting():
            if q.not_before <= now and self._can_run_on(q.job, host):
                count += 1
                if count >= at_most:
                    break
        return count

    def _can_run_on(self, job: Job, host: str) -> bool:
        """Pinned to ``host``, or a pool job and ``host`` is in the pool."""
        return job.host == host or (job.host is None and host in self.plan.pool)

    def _handle(self, message: _Message) -> None:
        if isinstance(message, _Answered):
            self._answered(message)
            return
        if isinstance(message, _Unlocked):  # a job's MS locks are back: the next job on its MSs may start
            self.scheduler.free_ms(message.job)
            return
        sid = message.sid
        sub = self._subs.get(sid)
        if sub is None:  # (its task had finished already)
            return
        if isinstance(message, _Ended):  # WSClean has ended: its slot is free (the task still finishes up)
            sub.ended = message.result
            self._free_slot(sid, sub, message.result)
            return
        if sub.handled:
            return
        sub.handled = True
        self._unhandled -= 1
        # Forgotten now that its task has finished: a night's thousands of finished
        # submissions would keep their Prefect futures and states to the end of the run.
        del self._subs[sid]
        result = replace(self._outcome(sub.job, sub.future), attempt=sub.queued.attempt)
        self._free_slot(sid, sub, result)  # (if the task died before saying WSClean ended)
        if oom_retry(result, self.worker, sub.queued):
            self.logger.warning("retry %s once, alone on a node (retry_oom = true): %s", sub.queued.job.label, result.reason)
            self.scheduler.requeue(sub.queued.retry(time.monotonic(), alone=True))
            return
        why = retry_reason(result, self.worker, sub.queued.attempt)
        if why and not self.scheduler.can_run(sub.queued.job):
            result = replace(result, reason=f"{result.reason}; not retried: {self._given_up.get(sub.host, 'no node left')}")
        elif why:
            now = time.monotonic()
            # a job pinned to its node waits for the node's cool-down too: say the real wait
            wait = self.worker.retry_delay
            if sub.queued.job.host is not None:
                wait = max(wait, self.scheduler.blocked_for(sub.queued.job.host, now))
            self.logger.warning(
                "retry %s (attempt %d of %d in %s): %s",
                sub.queued.job.label, sub.queued.attempt + 1, self.worker.retries + 1, _seconds(wait), why,
            )
            self.scheduler.requeue(sub.queued.retry(now + self.worker.retry_delay, avoid=sub.host))
            return
        if result.connection_error and (result.pid is not None or result.maybe_started):
            where = f"pid {result.pid}" if result.pid is not None else "its start was under way"
            self.logger.error("%s: not retried: WSClean had started there (%s)", sub.job.label, where)
        self._record(sub.queued, result)

    def _unlock(self, sub: _Submission, final: bool) -> None:
        """WSClean has ended: the job's MSs go back (to Prefect first, then to this run's
        scheduler); a lock limit no later job of this run needs is deleted."""
        keys = ms_keys(sub.queued.job)
        if final:
            self._ms_jobs.subtract(keys)
        done_with = tuple(k for k in keys if self._ms_jobs[k] <= 0)
        job = sub.queued.job  # (the scheduler's, as queued)
        if self._locks.release(sub.locks, done_with, then=lambda: self._inbox.put(_Unlocked(job))):
            self.scheduler.free_ms(job)

    def _free_slot(self, sid: str, sub: _Submission, result: JobResult) -> None:
        if sub.slot_freed:
            return
        sub.slot_freed = True
        again = retry_reason(result, self.worker, sub.queued.attempt) or oom_retry(result, self.worker, sub.queued)
        self._unlock(sub, final=not again)
        host = sub.host
        self.scheduler.release(host, sub.queued.job)
        self._slots.park(host, sub.lease)
        if result.connection_error and host not in self.scheduler.down:
            now = time.monotonic()
            cooling = self.scheduler.connection_failed(host, now, self.worker.host_cooldown, self.worker.node_give_up)
            if cooling is None:
                self._give_up(host, now, result.reason)
            elif cooling[1]:  # (a job that failed within the same cool-down: said already)
                wait = cooling[0]
                self.logger.warning("%s: no new job there for %s (connection failed; given up if it still fails %s "
                                    "after its first failure)", host, _seconds(wait),
                                    _seconds(self.worker.node_give_up))
        elif result.pid is not None:
            self.scheduler.connection_ok(host)

    def _give_up(self, host: str, now: float, reason: str) -> None:
        """``host`` has failed every connection for ``node_give_up``: no more tries this run;
        the jobs pinned to it fail now (the next run redoes them), pool jobs go elsewhere."""
        since = self.scheduler.failing_since(host) or now
        why = (f"node {host} given up: unreachable for {_seconds(now - since)} "
               f"([worker] node_give_up = {_seconds(self.worker.node_give_up)}): {reason}")
        self._given_up[host] = why
        self.logger.error("%s", why)
        for dropped in self.scheduler.mark_down(host):
            self._record(dropped, JobResult(dropped.job, FAILED, why, connection_error=True))

    def _record(self, queued: Queued, result: JobResult) -> None:
        self.results[self._order[id(queued.job)]] = result
        events.emit("finished", result)


def _seconds(s: float) -> str:
    """A wait as the log says it: ``10 s``, ``0.5 s``, ``180 s``."""
    return f"{round(s, 1):g} s"


def oom_retry(result: JobResult, worker: WorkerConfig, queued: Queued) -> bool:
    """A job that ran out of memory is tried once more, alone on a node, with ``retry_oom``."""
    return worker.retry_oom and result.oom_killed and not queued.alone


def retry_reason(result: JobResult, worker: WorkerConfig, attempt: int) -> str | None:
    """Why ``result`` deserves another attempt, or None."""
    if result.ok or result.status != FAILED or attempt > worker.retries:
        return None
    if result.connection_error:
        return f"{result.reason} (WSClean never started)" if result.pid is None and not result.maybe_started else None
    if worker.retry_failed_jobs:
        return f"{result.reason} (retry_failed_jobs = true)"
    return None
