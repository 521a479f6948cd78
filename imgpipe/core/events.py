"""Job progress events for whoever shows them (the CLI's progress bar).

A plain list of callbacks keeps the flow free of any display code and its parameters
serialisable for deployments.
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)

SHOWN = {"imgpipe_shown": True}
"""``extra=`` of a log line whose news the command line prints itself from these events
(a job's end, the run's summary): kept off its console, so that nothing shows twice;
still in the Prefect UI and a deployment run's console."""

_listeners: list[Callable[[str, object], None]] = []


def subscribe(listener: Callable[[str, object], None]) -> None:
    _listeners.append(listener)


def unsubscribe(listener: Callable[[str, object], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def emit(event: str, payload: object) -> None:
    """``event`` is ``"planned"`` (a Plan), ``"started"`` (a Job) or ``"finished"`` (a JobResult)."""
    for listener in list(_listeners):
        try:
            listener(event, payload)
        except Exception as err:  # a display problem must never fail a job, but it is said
            log.warning("%s listener %s failed: %s: %s", event, getattr(listener, "__qualname__", listener),
                        type(err).__name__, err)
