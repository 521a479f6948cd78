"""A deployment run's own watch on its Prefect server: a cancel that still stops the
jobs after an outage, and a night's end that waits for the server to come back.

Prefect's flow process watches for its run's cancel itself, but once that watch has
failed (a server outage: "Cancellation observer failed. Flow run cancellation
disabled.") a later cancel leaves the run ``Cancelling`` for good while WSClean runs on.
:class:`CancelWatch` reads the run's state every few seconds through Prefect's client
and, when the run has stayed ``Cancelling`` and nothing has begun stopping it, sends the
flow process the SIGTERM a worker's cancel would: the run stops its jobs as any cancelled
run does, and ends Cancelled itself (no worker is there to say so).

A night that ends while the server is down could not record its final states, artifact
or report task: :func:`wait_for_server` holds the run's end until the server answers
again (bounded), after the images, records and report are on disk.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from uuid import UUID

from prefect import get_client

POLL_S = 5.0
"""How often the run's state is read (a cancel stops the jobs within about two of these)."""
SERVER_WAIT_S = 1800.0
"""How long a night's end waits for its server to answer again."""


class CancelWatch:
    """``with CancelWatch(flow_run_id):`` while the jobs run; ``stopping()`` once the run
    is being stopped anyway (the watch then does nothing more)."""

    def __init__(self, flow_run_id: UUID | str, poll_s: float = POLL_S):
        self._id = UUID(str(flow_run_id))
        self._poll_s = poll_s
        self._done = threading.Event()
        self.fired = False
        """It stopped the run (the run then ends Cancelled itself: no worker will)."""
        self._thread = threading.Thread(target=self._watch, name="imgpipe-cancel-watch", daemon=True)

    def __enter__(self) -> "CancelWatch":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()

    def stopping(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        seen = 0
        with get_client(sync_client=True) as client:
            while not self._done.wait(self._poll_s):
                try:
                    state = client.read_flow_run(self._id).state
                except Exception:  # the server is down: look again next time
                    continue
                seen = seen + 1 if state is not None and state.is_cancelling() else 0
                if seen >= 2 and not self._done.is_set():  # Prefect's own watch missed it
                    self._done.set()
                    self.fired = True
                    os.kill(os.getpid(), signal.SIGTERM)


def server_answers() -> bool:
    """Does the run's Prefect API answer now?"""
    with get_client(sync_client=True) as client:
        return client.api_healthcheck() is None


def wait_for_server(logger, limit_s: float = SERVER_WAIT_S, poll_s: float = POLL_S) -> bool:
    """True once the Prefect API answers (at once, usually); False after ``limit_s``."""
    with get_client(sync_client=True) as client:
        if client.api_healthcheck() is None:
            return True
        logger.warning("the Prefect server does not answer: the run waits up to %d min for it to record its end "
                       "(its images, records and report are written)", round(limit_s / 60))
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            if client.api_healthcheck() is None:
                logger.warning("the Prefect server answers again: the run records its end")
                return True
    return False
