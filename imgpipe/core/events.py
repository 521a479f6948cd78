"""Job progress events for whoever shows them (the CLI's progress bar).

A plain list of callbacks keeps the flow free of any display code and its parameters
serialisable for deployments.
"""

from __future__ import annotations

from typing import Callable

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
        except Exception:  # a display problem must never fail a job
            pass
