"""The jobs a backend is running in this process, so that a cancel can reach them all."""

from __future__ import annotations

import threading
import time

CANCEL_GRACE_S = 10.0
"""SIGTERM → SIGKILL grace when a run is cancelled (Ctrl-C, SIGTERM): everything is gone within it."""


class RunningJobs:
    """A registry of running jobs (any handle: a process, a channel) plus the run's cancel flag."""

    def __init__(self):
        self._items: dict[int, object] = {}
        self._lock = threading.Lock()
        self.cancelled = threading.Event()

    def add(self, key: int, item: object) -> None:
        with self._lock:
            self._items[key] = item

    def remove(self, key: int) -> None:
        with self._lock:
            self._items.pop(key, None)

    def items(self) -> list:
        with self._lock:
            return list(self._items.values())

    def wait_empty(self, timeout_s: float) -> list:
        """Wait until every job has ended or ``timeout_s`` passed; returns those still running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._items:
                    return []
            time.sleep(0.05)
        return self.items()
