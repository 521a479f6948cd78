"""A run's node slots as the dispatcher holds them: leases from Prefect (``NodeLimits``)
that pass from a job that ended to the next job on its node without an API call.

Why a class of its own: the dispatcher decides which job starts where; what it holds
of Prefect's slots (idle leases per node, requests under way, failures in a row, leases
being given back) is bookkeeping with rules of its own, tested on its own.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable, Protocol


class SlotSource(Protocol):
    """Where node slots come from (``NodeLimits``)."""

    def try_acquire(self, host: str) -> Any: ...

    def try_acquire_slots(self, host: str, count: int) -> list[Any] | None: ...

    def release(self, lease: Any) -> None: ...


class NodeSlots:
    """The slots one run holds in Prefect: idle ones per node, asked for, given back."""

    def __init__(self, limits: SlotSource):
        self._limits = limits
        self._idle: dict[str, list[Any]] = defaultdict(list)
        self.asking = 0
        """Slot requests to Prefect still unanswered (their jobs hold a scheduler slot)."""
        self._errors: dict[str, int] = defaultdict(int)
        self._releases: list[threading.Thread] = []

    def take_first(self, wants: dict[str, int]) -> None:
        """Before the first job: ``wants[host]`` slots of each node in one request per node
        (``Dispatcher._take_first_slots`` says why); whatever is granted waits idle."""
        for host, want in wants.items():
            for slot in (self._limits.try_acquire_slots(host, want) if want > 1 else None) or ():
                self._idle[host].append(slot)

    def idle(self, host: str) -> Any | None:
        """A slot this run holds on ``host`` and no job uses (taken out), or None."""
        return self._idle[host].pop() if self._idle[host] else None

    def park(self, host: str, lease: Any) -> None:
        """A slot no job uses now (its job ended, or it was refused an MS): kept for the next."""
        self._idle[host].append(lease)

    def request(self, host: str) -> Any | None:
        """(In a thread.) A new slot on ``host`` from Prefect; None when the node's slots are
        all held (by other runs); raises what the request raised."""
        return self._limits.try_acquire(host)

    def failed(self, host: str) -> int:
        """A slot request for ``host`` failed: how many in a row now."""
        self._errors[host] += 1
        return self._errors[host]

    def answered(self, host: str) -> None:
        """A slot request for ``host`` was answered (granted or refused): its failures are over."""
        self._errors.pop(host, None)

    def give_back(self, keep: Callable[[str, int], int]) -> None:
        """Give back to Prefect (in threads) the idle slots beyond ``keep(host, idle count)``
        per node: other runs may take them then."""
        for host, leases in self._idle.items():
            if not leases:
                continue
            kept = keep(host, len(leases))
            for lease in leases[kept:]:
                thread = threading.Thread(target=self._limits.release, args=(lease,), daemon=True)
                thread.start()
                self._releases = [t for t in self._releases if t.is_alive()] + [thread]
            del leases[kept:]

    def join(self, deadline: float) -> None:
        """Wait (until ``deadline``, monotonic) for the slots still being given back."""
        for thread in self._releases:
            thread.join(max(0.0, deadline - time.monotonic()))
