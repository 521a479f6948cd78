"""Which job starts next, and where: never more than ``max_concurrent`` per node.

- Pinned jobs (run_on_file_host) wait for their own node only; a busy node does not
  hold back jobs of a free one.
- Pool jobs take the node with the most free slots the moment one frees, so jobs of
  uneven length never queue behind a busy node while another idles.
- A node can be *blocked* for a while (a connection just failed there: cool-down; or
  another imgpipe run holds its slots) and *down* (unreachable at start).
- Retries come back with a not-before time.
- Two jobs that read a common MS never run at once (see :mod:`imgpipe.core.ms_sharing`):
  the later waits, and the slot goes to the next job that can run.
- A job to run *alone* (a retry after running out of memory) reserves a node: that node
  takes no new job until it is empty, then runs that job and nothing else beside it.
- Where a node's cores and memory are known, a job starts there only if its cores and
  memory (``demand``: its category, or its share's cores and its memory estimate) fit in
  what the jobs running there leave; a job too big for the node still runs on it when
  the node is empty (rather than never).

Pure bookkeeping, no clock of its own: callers pass ``now`` (monotonic seconds).
Starting a job only when it has a slot keeps queued jobs honest in the Prefect UI
(Pending, not Running while they wait).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from imgpipe.core.ms_sharing import ms_keys
from imgpipe.core.plan import Job

MAX_COOLDOWN_S = 300.0
"""The longest cool-down between two tries of a failing node (``host_cooldown`` doubles up to it)."""


@dataclass(frozen=True)
class Queued:
    """A job waiting for a slot."""

    job: Job
    """As planned (``host`` None: any node of the pool)."""
    attempt: int = 1
    not_before: float = 0.0
    """Monotonic time before which it must not start (retry delay)."""
    avoid: str | None = None
    """Node where the previous attempt failed to connect: used only if no other node is free."""
    alone: bool = False
    """Run with no other job on its node (a retry after it ran out of memory)."""

    def retry(self, not_before: float, avoid: str | None = None, alone: bool = False) -> "Queued":
        return replace(self, attempt=self.attempt + 1, not_before=not_before, avoid=avoid, alone=alone or self.alone)


Demand = Callable[[Job, str], "tuple[int, int] | None"]
"""(job, node) → the (cores, MiB) the job needs there; None: it does not say."""


class SlotScheduler:
    def __init__(self, jobs, pool: list[str] | tuple[str, ...], max_concurrent: int,
                 capacity: dict[str, tuple[int, int]] | None = None, demand: Demand | None = None):
        """``capacity``: (cores, usable MiB) of the nodes whose size is known; with ``demand``,
        jobs are admitted by what fits (see the module's docstring)."""
        self._capacity = dict(capacity or {})
        self._demand = demand
        self._held: dict[str, tuple[int, int]] = {}
        """Per node: the cores and MiB its running jobs asked for."""
        self._holding: dict[int, tuple[str, tuple[int, int]]] = {}
        """Running jobs → (their node, what they hold there)."""
        self._pending: list[Queued] = [q if isinstance(q, Queued) else Queued(q) for q in jobs]
        self.pool = list(pool)
        self._max = max_concurrent
        self.running: Counter[str] = Counter()
        self._blocked_until: dict[str, float] = {}
        self._failures: Counter[str] = Counter()
        self._failing_since: dict[str, float] = {}
        """Per node failing its connections: when the first failure in a row came."""
        self.down: set[str] = set()
        self._in_use: dict[str, Job] = {}
        """MS (normalised path) → the job of this run that holds it (running, or its lock still held)."""
        self._waiting_on: dict[int, str] = {}
        """Jobs held back for an MS in use, and which (so that each wait is told once)."""
        self._new_waits: list[tuple[Job, str, Job]] = []
        self._reserved: dict[int, tuple[Job, str]] = {}
        """Jobs to run alone → (the job, the node kept free for it while it empties)."""
        self._alone_on: set[str] = set()
        """Nodes running a job alone: no other job there until it ends."""
        self._unchanged_until: float | None = None
        """Set when a look found nothing to start: until then (the next retry's or cool-down's
        end), and until a change (a job ends, is queued, an MS is freed...), another look
        would find nothing either, and is skipped (a night's queue holds thousands of jobs
        and the dispatcher looks after every event)."""
        self._keys = {id(q.job): (q.job, ms_keys(q.job)) for q in self._pending}
        """Each job's MSs, normalised once (take_ready looks at every waiting job each time);
        the job is kept beside them, so that its id cannot be another job's meanwhile."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def remove(self, job: Job) -> None:
        """Take ``job`` out of the queue (it will not run: done before)."""
        self._unchanged_until = None
        self._pending = [q for q in self._pending if q.job is not job]

    def queued(self) -> list[Queued]:
        return list(self._pending)

    def waiting(self):
        """The queue in order, not copied (for a count that stops early; do not change the queue meanwhile)."""
        return iter(self._pending)

    def _free(self, host: str, now: float) -> int:
        if host in self.down or self._blocked_until.get(host, 0.0) > now:
            return 0
        if host in self._alone_on or any(h == host for _, h in self._reserved.values()):
            return 0
        return self._max - self.running[host]

    def _reserve(self, queued: Queued) -> str | None:
        """The node kept for a job to run alone: the one with the fewest jobs (no new job
        goes there from now on); None while every node is down or kept for another."""
        job = queued.job
        _, host = self._reserved.get(id(job), (job, None))
        if host is None:
            taken = {h for _, h in self._reserved.values()} | self._alone_on
            hosts = [job.host] if job.host is not None else list(self.pool)
            hosts = [h for h in hosts if h not in self.down and h not in taken]
            if not hosts:
                return None
            host = min(hosts, key=lambda h: self.running[h])  # first of the emptiest, in pool order
            self._reserved[id(job)] = (job, host)
        return host

    def _place_alone(self, queued: Queued, now: float) -> str | None:
        """A job to run alone starts on its kept node once that node is empty."""
        job = queued.job
        host = self._reserve(queued)
        if host is None or self.running[host] or self._blocked_until.get(host, 0.0) > now or host in self.down:
            return None
        del self._reserved[id(job)]
        self._alone_on.add(host)
        return host

    def take_ready(self, now: float = 0.0) -> list[tuple[Queued, str]]:
        """(job, node) pairs that may start now, their slots counted as taken, in queue order.

        Each node's free slots are worked out once per call and updated as jobs are placed,
        and a pool job looks only at nodes with a slot left: with thousands of jobs queued
        and every slot busy (most calls of a big night), a call costs one look at each job
        (its MSs, for the waits it tells), not one per job and node."""
        if self._unchanged_until is not None and now < self._unchanged_until:
            return []
        free = {host: self._free(host, now) for host in self.pool}
        open_hosts = [h for h in self.pool if free[h] > 0]
        ready, left = [], []
        for queued in self._pending:
            if queued.alone:  # its node is kept from now on, even while its MS is still held
                kept = self._reserve(queued)
                if kept is not None:
                    free[kept] = self._free(kept, now)
                    open_hosts = [h for h in open_hosts if free.get(h, 0) > 0]
            busy = self._ms_in_use(queued.job)
            host = None if busy else self._place(queued, now, free, open_hosts)
            if host is None:
                left.append(queued)
            else:
                self.running[host] += 1
                self._hold(queued.job, host)
                for key in self._keys_of(queued.job):
                    self._in_use[key] = queued.job
                self._waiting_on.pop(id(queued.job), None)
                ready.append((queued, host))
                free[host] = self._free(host, now)
                if free[host] <= 0 and host in open_hosts:
                    open_hosts = [h for h in open_hosts if h != host]
        self._pending = left
        self._unchanged_until = None
        if not ready:
            wakeup = self.next_wakeup(now)
            self._unchanged_until = math.inf if wakeup is None else now + wakeup
        return ready

    def _needs(self, job: Job, host: str) -> tuple[int, int] | None:
        if self._demand is None or host not in self._capacity:
            return None
        return self._demand(job, host)

    def fits(self, job: Job, host: str) -> bool:
        """``job``'s cores and memory fit on ``host`` beside its running jobs (always, on an
        empty node, or where the node's size or the job's needs are unknown)."""
        need = self._needs(job, host)
        if need is None or not self.running[host]:
            return True
        cores, mem = self._capacity[host]
        held = self._held.get(host, (0, 0))
        return held[0] + need[0] <= cores and held[1] + need[1] <= mem

    def _memory_left(self, host: str) -> int:
        """MiB a node's running jobs leave (0 where its size is unknown)."""
        if host not in self._capacity:
            return 0
        return self._capacity[host][1] - self._held.get(host, (0, 0))[1]

    def _hold(self, job: Job, host: str) -> None:
        need = self._needs(job, host)
        if need is not None:
            held = self._held.get(host, (0, 0))
            self._held[host] = (held[0] + need[0], held[1] + need[1])
            self._holding[id(job)] = (host, need)

    def _unhold(self, job: Job | None) -> None:
        if job is None or id(job) not in self._holding:
            return
        host, need = self._holding.pop(id(job))
        held = self._held[host]
        self._held[host] = (held[0] - need[0], held[1] - need[1])

    def _ms_in_use(self, job: Job) -> str | None:
        """An MS of ``job`` that another job of this run holds (noted once per wait), or None."""
        for key in self._keys_of(job):
            holder = self._in_use.get(key)
            if holder is not None:  # (itself too: a retry waits for its own lock to be back)
                if holder is not job and self._waiting_on.get(id(job)) != key:
                    self._waiting_on[id(job)] = key
                    self._new_waits.append((job, key, holder))
                return key
        return None

    def _keys_of(self, job: Job) -> tuple[str, ...]:
        known = self._keys.get(id(job))
        if known is None:  # (a job queued later than the plan's)
            known = self._keys[id(job)] = (job, ms_keys(job))
        return known[1]

    def new_waits(self) -> list[tuple[Job, str, Job]]:
        """(job, MS, job holding it) for each job that began waiting for an MS since the last call."""
        waits, self._new_waits = self._new_waits, []
        return waits

    def free_ms(self, job: Job) -> None:
        """``job`` no longer holds its MSs (it ended and its cross-run lock is back)."""
        self._unchanged_until = None
        for key in self._keys_of(job):
            if self._in_use.get(key) is job:
                del self._in_use[key]

    def _place(self, queued: Queued, now: float, free: dict[str, int], open_hosts: list[str]) -> str | None:
        """The node ``queued`` starts on now, or None. ``free``: slots left per node (filled in
        for a pinned job's node when first asked); ``open_hosts``: the pool's nodes with one."""
        if queued.not_before > now:
            return None
        if queued.alone:
            return self._place_alone(queued, now)
        if queued.job.host is not None:
            host = queued.job.host
            if host not in free:
                free[host] = self._free(host, now)
            return host if free[host] > 0 and self.fits(queued.job, host) else None
        candidates = [h for h in open_hosts if self.fits(queued.job, h)]
        if len(candidates) > 1 and queued.avoid in candidates:
            candidates.remove(queued.avoid)
        if not candidates:
            return None
        # the freest first (slots, then memory left where known), in pool order among equals
        return max(candidates, key=lambda h: (free[h], self._memory_left(h)))

    def release(self, host: str, job: Job | None = None) -> None:
        """A job on ``host`` ended (any way): free its slot (and, given ``job``, what it held)."""
        self._unchanged_until = None
        self.running[host] -= 1
        self._unhold(job)
        if self.running[host] <= 0:
            self._alone_on.discard(host)

    def give_back(self, queued: Queued, host: str) -> None:
        """A job taken by ``take_ready`` could not start after all: free the slot and its MSs, keep its place."""
        self._unchanged_until = None
        self.running[host] -= 1
        self._unhold(queued.job)
        if self.running[host] <= 0:
            self._alone_on.discard(host)
        self.free_ms(queued.job)
        self._pending.insert(0, queued)

    def requeue(self, queued: Queued) -> None:
        """Queue a retry (at the front: it waited longest)."""
        self._unchanged_until = None
        self._pending.insert(0, queued)

    def block(self, host: str, until: float) -> None:
        """No new job on ``host`` before ``until``."""
        self._unchanged_until = None
        self._blocked_until[host] = max(until, self._blocked_until.get(host, 0.0))

    def connection_failed(self, host: str, now: float, cooldown_s: float, give_up_s: float) -> tuple[float, bool] | None:
        """Cool ``host`` down: ``cooldown_s``, doubled for each failure in a row (at most 5 min),
        and never past ``give_up_s`` after its first failure in a row: a last try then.

        Returns (the wait left, whether this failure began it), or None when the node has failed for ``give_up_s``:
        it is given up for the run (the caller marks it down). A failure while the node is
        already cooling down (a job that set out before the last failure) is the same
        outage: it neither doubles the wait nor counts (six jobs failing at once doubled it
        six times, up to 5 minutes per job, 20 minutes for a night's six pinned jobs).
        """
        since = self._failing_since.setdefault(host, now)
        blocked = self._blocked_until.get(host, 0.0)
        if blocked > now:
            return blocked - now, False
        if now - since >= give_up_s:
            return None
        self._failures[host] += 1
        wait = min(cooldown_s * 2 ** (self._failures[host] - 1), max(cooldown_s, MAX_COOLDOWN_S), since + give_up_s - now)
        self.block(host, now + wait)
        return wait, True

    def blocked_for(self, host: str, now: float) -> float:
        """Seconds before ``host`` takes a new job again (0: it may now)."""
        return max(0.0, self._blocked_until.get(host, 0.0) - now)

    def failing_since(self, host: str) -> float | None:
        """When ``host``'s failures in a row began (None: it is not failing)."""
        return self._failing_since.get(host)

    def can_run(self, job: Job) -> bool:
        """Some node may still take ``job``: its own (pinned) or one of the pool's, not down."""
        if job.host is not None:
            return job.host not in self.down
        return any(h not in self.down for h in self.pool)

    def connection_ok(self, host: str) -> None:
        self._failures.pop(host, None)
        self._failing_since.pop(host, None)

    def mark_down(self, host: str) -> list[Queued]:
        """``host`` is unreachable: pool jobs avoid it; returns (and drops) the jobs pinned to it."""
        self._unchanged_until = None
        self.down.add(host)
        self._reserved = {k: v for k, v in self._reserved.items() if v[1] != host}
        dropped = [q for q in self._pending if q.job.host == host]
        self._pending = [q for q in self._pending if q.job.host != host]
        if all(h in self.down for h in self.pool):
            dropped += [q for q in self._pending if q.job.host is None]
            self._pending = [q for q in self._pending if q.job.host is not None]
        return dropped

    def next_wakeup(self, now: float) -> float | None:
        """Seconds until a waiting job might become startable by the clock alone (None: only a finished job helps)."""
        if self._unchanged_until is not None:  # (worked out by the last look, nothing changed since)
            return None if self._unchanged_until == math.inf else max(0.0, self._unchanged_until - now)
        times = [q.not_before for q in self._pending if q.not_before > now]
        times += [t for t in self._blocked_until.values() if t > now]
        return min(times) - now if times else None
