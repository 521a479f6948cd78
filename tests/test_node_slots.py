"""The node slots a run holds: passed from job to job, asked for, given back."""

from __future__ import annotations

import threading
import time

from imgpipe.orchestration.node_slots import NodeSlots


class Limits:
    """A stand-in for NodeLimits: slots per node, counted."""

    def __init__(self, per_node: int):
        self.per_node = per_node
        self.taken: dict[str, int] = {}
        self.released: list[str] = []
        self._lock = threading.Lock()

    def try_acquire(self, host):
        with self._lock:
            if self.taken.get(host, 0) >= self.per_node:
                return None
            self.taken[host] = self.taken.get(host, 0) + 1
            return f"{host}-{self.taken[host]}"

    def try_acquire_slots(self, host, count):
        return [self.try_acquire(host) for _ in range(count)]

    def release(self, lease):
        with self._lock:
            self.released.append(lease)


def test_an_idle_slot_goes_to_the_next_job_and_the_rest_go_back():
    limits = Limits(per_node=2)
    slots = NodeSlots(limits)
    slots.take_first({"n1": 2, "n2": 1})  # (one slot is asked for when the job comes)
    assert slots.idle("n2") is None
    first = slots.idle("n1")
    assert first is not None and slots.idle("n1") is not None and slots.idle("n1") is None
    slots.park("n1", first)
    assert slots.idle("n1") == first  # no API call: the same lease
    slots.park("n1", first)
    slots.park("n1", "n1-2")
    slots.give_back(lambda host, idle: 1)  # one job still waits for n1
    slots.join(time.monotonic() + 5)
    assert limits.released == ["n1-2"] and slots.idle("n1") == first


def test_failures_in_a_row_are_counted_per_node_until_an_answer():
    slots = NodeSlots(Limits(per_node=1))
    assert [slots.failed("n1"), slots.failed("n1"), slots.failed("n2")] == [1, 2, 1]
    slots.answered("n1")
    assert slots.failed("n1") == 1
    assert slots.request("n3") == "n3-1" and slots.request("n3") is None  # (its slots held elsewhere)
