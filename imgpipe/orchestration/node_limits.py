"""Per-node slots held in Prefect, so that two imgpipe runs sharing nodes respect one cap.

One Prefect global concurrency limit per node, ``imgpipe-node-<host>`` with
``limit = max_concurrent``. The flow's own dispatcher only asks for a slot when it
believes one is free, and asks *without waiting* (one API call, a few ms): granted →
the job starts now; refused (423, another run holds the slots) → the dispatcher tries
another node or asks again a moment later. This keeps Prefect's guarantee across runs
without its client-side wait, which sleeps about one job length (capped at 30 s)
between attempts and left slots idle (measured: 8 one-second jobs on 2 × 2 slots took
~4 s instead of 2 s).

The embedded server keeps its state in SQLite; a write that meets a busy database gets
"503, retry" and Prefect's client would sleep 2 s before trying again (measured: every
second slot request of a run waited that long), even told to retry 0 times (Prefect
3.9 sleeps once before it gives up: measured, the first job of a run started 2.2 s late).
Our calls send each request once (``prefect_internals.send_each_request_once``) and retry it themselves after a few
milliseconds, one at a time: two slot requests at once conflict in
SQLite (each increments a limit row), and the server answers the loser with a 503
only after about 2 s (measured at the start of a run on 3 nodes × 2 slots).

A run that can fill a node asks for all its slots there in one request (one lease
for several slots, see ``Dispatcher._take_first_slots``); each slot is then a handle
of its own, and the lease goes back when the last handle does.

Measurement Sets are locked the same way, so that two runs never image one MS at the
same moment (:mod:`imgpipe.core.ms_sharing` says why): one limit of 1 per MS,
``imgpipe-ms-<name>-<hash of its path>``, created when first needed and deleted when
the run that used it last has no more jobs on it (so months of nights do not fill the
server with limits). Used with ``[prefect] ms_locks = 'server'`` only
(``orchestration/ms_locks.py``). A job holds one lease on all its MSs, taken after its
node slot and given back the moment its WSClean has ended. A limit deleted by one run at the moment
another takes it leaves that lease on nothing: with two runs it cannot matter (the
deleting run has no more jobs there); it could let a third run in, for a few ms.

Slots are leases (60 s, renewed every 15 s while the job runs), so a run killed with
SIGKILL frees its slots within a minute: imgpipe revokes expired leases itself, since
the embedded (ephemeral) Prefect server does not run Prefect's repossessor service.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from uuid import UUID

import httpx
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings

from imgpipe.core.nodes import is_local
from imgpipe.orchestration.prefect_internals import FILESYSTEM_LEASES, expired_leases, send_each_request_once

LEASE_S = 60.0
RENEW_EVERY_S = 15.0
BUSY_RETRY_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0)

log = logging.getLogger(__name__)


def limit_name(host: str) -> str:
    """``imgpipe-node-<host>``; local jobs count against this machine's name."""
    return f"imgpipe-node-{socket.gethostname() if is_local(host) else host}"


def ms_lock_name(path: str) -> str:
    """``imgpipe-ms-SW01.MS-<12 hex>``: readable in the UI, unique per MS path."""
    path = os.path.normpath(path)
    base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(path))[:40]
    return f"imgpipe-ms-{base}-{hashlib.sha1(path.encode()).hexdigest()[:12]}"


class SharedSlot:
    """One slot of a lease that holds several (see :meth:`NodeLimits.try_acquire_slots`)."""

    def __init__(self, lease_id: UUID):
        self.lease_id = lease_id


class NodeLimits:
    """Acquire/release node slots in Prefect; renews the leases it holds."""

    def __init__(self, hosts: list[str], max_concurrent: int, logger: logging.Logger | logging.LoggerAdapter = log):
        self._log = logger
        """Where lost and retaken slots are said (the flow run's log)."""
        self._client = get_client(sync_client=True)
        self._client.__enter__()
        self._held: dict[UUID, str] = {}
        self._names: dict[UUID, list[str]] = {}
        """The limits each held lease counts against (to take it again if it lapses)."""
        self._now: dict[UUID, UUID] = {}
        """A lapsed lease → the one that replaced it (the dispatcher still holds the first)."""
        self._lapsed: set[UUID] = set()
        """Leases that lapsed and could not be taken again yet (their slots went to another run)."""
        self._said: set[UUID] = set()
        self._shared: dict[UUID, int] = {}
        """Slots of each multi-slot lease still held by a job or idle in the dispatcher."""
        self._lock = threading.Lock()
        self._api = threading.Lock()
        self._stop = threading.Event()
        self._last_reclaim = 0.0
        self._lock_names: set[str] = set()
        """MS limits this run used and has not deleted yet (a stopped run deletes them as it closes)."""
        send_each_request_once(self._client)
        for host in hosts:
            self._call(self._client.upsert_global_concurrency_limit_by_name, limit_name(host), max_concurrent)
        self.reclaim_expired()
        self._renewer = threading.Thread(target=self._renew_loop, name="imgpipe-lease-renewal", daemon=True)
        self._renewer.start()

    def _call(self, method, *args, **kwargs):
        """``method`` of the Prefect client, retried within milliseconds while the database is busy."""
        for delay in (*BUSY_RETRY_S, None):
            try:
                with self._api:
                    return method(*args, **kwargs)
            except httpx.HTTPStatusError as err:
                if err.response.status_code not in (429, 503) or delay is None:
                    raise
            time.sleep(delay)

    def _increment(self, names: list[str], slots: int, reclaim: bool) -> dict | None:
        """Prefect's answer to a lease on ``slots`` slots of every limit in ``names``, or None
        when one is full (423). ``reclaim``: then free the slots of runs that died, if not
        done lately (the next request may find them)."""
        try:
            return self._call(
                self._client.increment_concurrency_slots_with_lease,
                names=names, slots=slots, mode="concurrency", lease_duration=LEASE_S,
            ).json()
        except httpx.HTTPStatusError as err:
            if err.response.status_code != 423:
                raise
            if reclaim and time.monotonic() - self._last_reclaim > LEASE_S / 2:
                self.reclaim_expired()
            return None

    def try_acquire(self, host: str) -> UUID | None:
        """A lease on one slot of ``host`` now, or None if every slot is taken (by any run)."""
        answer = self._increment([limit_name(host)], 1, reclaim=True)
        if answer is None:
            return None
        lease_id = UUID(answer["lease_id"])
        with self._lock:
            self._held[lease_id] = host
            self._names[lease_id] = [limit_name(host)]
        return lease_id

    def try_acquire_slots(self, host: str, slots: int) -> list["SharedSlot"] | None:
        """``slots`` slots of ``host`` in one request (one lease), or None if fewer are free.

        Each slot comes back as a handle of its own for :meth:`release`; the lease goes
        back to Prefect when the last of them does.
        """
        answer = self._increment([limit_name(host)], slots, reclaim=False)
        if answer is None:
            return None
        lease_id = UUID(answer["lease_id"])
        with self._lock:
            self._held[lease_id] = host
            self._names[lease_id] = [limit_name(host)]
            self._shared[lease_id] = slots
        return [SharedSlot(lease_id) for _ in range(slots)]

    def try_lock(self, ms_paths) -> UUID | None:
        """One lease on every MS of a job now, or None if another run holds one of them.

        Limits that do not exist yet are created (Prefect ignores names it does not
        know, so the answer is checked: a lease must cover every MS)."""
        names = list(dict.fromkeys(ms_lock_name(p) for p in ms_paths))
        self._lock_names.update(names)
        for _ in range(3):
            answer = self._increment(names, 1, reclaim=True)
            if answer is None:
                return None
            lease_id = UUID(answer["lease_id"])
            missing = set(names) - {limit["name"] for limit in answer.get("limits", [])}
            if not missing:
                with self._lock:
                    self._held[lease_id] = "ms"
                    self._names[lease_id] = names
                return lease_id
            self._call(self._client.release_concurrency_slots_with_lease, lease_id)
            for name in sorted(missing):
                try:
                    self._call(self._client.create_global_concurrency_limit,
                               GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:
                    pass  # another run made it meanwhile
        raise RuntimeError(f"cannot create the Prefect limits that lock {', '.join(names)}")

    def drop_locks(self, ms_paths) -> None:
        """Delete the MS limits no job holds now (this run has no more jobs on these MSs)."""
        self._drop_names(list(dict.fromkeys(ms_lock_name(p) for p in ms_paths)))

    def _drop_names(self, names) -> None:
        for name in names:
            self._lock_names.discard(name)
            try:
                limit = self._call(self._client.read_global_concurrency_limit_by_name, name)
                if limit.active_slots == 0:
                    self._call(self._client.delete_global_concurrency_limit_by_name, name)
            except ObjectNotFound:
                pass
            except Exception as err:  # a limit left behind is only a row in the database
                log.debug("could not delete %s: %s", name, err)

    def release(self, lease_id: "UUID | SharedSlot | None") -> None:
        if lease_id is None:
            return
        with self._lock:
            if isinstance(lease_id, SharedSlot):
                lease_id = lease_id.lease_id
                self._shared[lease_id] -= 1
                if self._shared[lease_id] > 0:
                    return  # other slots of this lease are still in use
                del self._shared[lease_id]
            self._held.pop(lease_id, None)
            self._names.pop(lease_id, None)
            self._lapsed.discard(lease_id)
            lease_id = self._now.pop(lease_id, lease_id)  # (taken again after it lapsed)
            self._held.pop(lease_id, None)
        try:
            self._call(self._client.release_concurrency_slots_with_lease, lease_id)
        except Exception as err:  # the lease then expires on its own within LEASE_S
            log.warning("could not release node slot %s: %s", lease_id, err)

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            with self._lock:
                held = [(lease, self._now.get(lease, lease)) for lease in self._held if lease not in self._now.values()]
            for lease_id, current in held:
                if lease_id in self._lapsed:
                    self._take_again(lease_id)
                    continue
                try:
                    self._call(self._client.renew_concurrency_lease, current, lease_duration=LEASE_S)
                except httpx.HTTPStatusError as err:
                    if err.response.status_code not in (404, 410):
                        self._log.warning("could not renew node slot %s: %s", current, err)
                        continue
                    # it lapsed while the server could not be reached (an outage longer than
                    # the lease): the job still runs, so its slot is taken again at once
                    self._lapsed.add(lease_id)
                    self._take_again(lease_id)
                except Exception as err:  # the server is down: the lease lasts LEASE_S from its last renewal
                    self._log.warning("could not renew node slot %s: %s", current, err)

    def _take_again(self, lease_id: UUID) -> None:
        """A lease that lapsed (its slots freed by the server) taken again for the job that
        still runs; if another run took the slots meanwhile, said, and tried again at the
        next renewal (that run's own jobs then keep the node at its cap)."""
        with self._lock:
            names = self._names.get(lease_id)
            slots = self._shared.get(lease_id, 1)
            where = self._held.get(lease_id)
        if not names or lease_id not in self._lapsed:
            return
        what = "a job's MS lock" if where == "ms" else f"the slot(s) of a job on {where}"
        try:
            answer = self._increment(names, slots, reclaim=False)
        except Exception as err:
            self._log.warning("could not take again %s, which lapsed: %s", what, err)
            return
        if answer is None:
            if lease_id in self._said:
                return
            self._said.add(lease_id)
            self._log.warning("%s lapsed while the Prefect server could not be reached, and another run holds it now: "
                              "more jobs than the cap may run there until one ends", what)
            return
        new = UUID(answer["lease_id"])
        with self._lock:
            if lease_id not in self._held:  # released meanwhile: give the new one back
                self._lapsed.discard(lease_id)
                released = True
            else:
                if (previous := self._now.get(lease_id)) is not None:  # (it lapsed before: that one is gone)
                    self._held.pop(previous, None)
                self._now[lease_id] = new
                self._held[new] = self._held[lease_id]
                self._lapsed.discard(lease_id)
                released = False
        if released:
            self._call(self._client.release_concurrency_slots_with_lease, new)
            return
        self._log.warning("%s lapsed while the Prefect server could not be reached: taken again", what)

    def reclaim_expired(self) -> int:
        """Revoke leases that expired (their run died) so their slots count as free again.

        Works with Prefect's filesystem lease storage (the CLI selects it for the embedded
        server); a long-running ``prefect server`` does this itself (repossessor service).
        """
        self._last_reclaim = time.monotonic()
        settings = get_current_settings()
        if settings.server.concurrency.lease_storage != FILESYSTEM_LEASES:
            return 0
        reclaimed = 0
        for lease_id in expired_leases(Path(settings.home), datetime.now(timezone.utc)):
            try:
                self._call(self._client.release_concurrency_slots_with_lease, UUID(lease_id))
                reclaimed += 1
            except Exception as err:  # released meanwhile (by its run, or another run's sweep)
                log.debug("lease %s: %s", lease_id, err)
        if reclaimed:
            log.warning("freed %d node slot(s) held by an imgpipe run that died", reclaimed)
        return reclaimed

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = [lease for lease in self._held if lease not in self._now.values()]
        for lease_id in held:
            self.release(lease_id)
        self._drop_names(sorted(self._lock_names))
        self._client.__exit__(None, None, None)
