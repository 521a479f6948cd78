"""Job events for displays: a broken display never fails a job, and is not silent."""

from __future__ import annotations

import logging

from imgpipe.core import events


def test_a_failing_listener_is_logged_and_the_others_still_hear(caplog):
    heard = []

    def broken(event, payload):
        raise ValueError("no terminal")

    def display(event, payload):
        heard.append((event, payload))

    events.subscribe(broken)
    events.subscribe(display)
    try:
        with caplog.at_level(logging.WARNING, logger="imgpipe.core.events"):
            events.emit("finished", 42)
    finally:
        events.unsubscribe(broken)
        events.unsubscribe(display)
    assert heard == [("finished", 42)]
    assert [r.getMessage() for r in caplog.records] == [
        "finished listener test_a_failing_listener_is_logged_and_the_others_still_hear.<locals>.broken failed: ValueError: no terminal"
    ]
