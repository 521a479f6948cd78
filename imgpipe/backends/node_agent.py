"""imgpipe's side of a node agent (see ``agent_script``): start jobs, route their output.

Transport-agnostic on purpose: it talks to the agent through a binary line reader, a
write function and a close-input function, so the same code runs over an SSH channel
and, in tests, over a local pipe.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from typing import Callable, Iterable, NamedTuple

from imgpipe.core.job_resources import Capacity
from imgpipe.facts.node_capacity import capacity_from_words

OUTPUT, EXITED, NOT_STARTED, LOST = "o", "x", "e", "lost"
"""What a job's queue carries: (OUTPUT, line), (EXITED, Exited), (NOT_STARTED, why), (LOST, why)."""


class Exited(NamedTuple):
    """How a job's wrapper ended, as the agent reaped it on the node."""

    status: int
    """Exit status (negative: killed by that signal)."""
    max_rss_kb: int
    """Peak resident memory of the wrapper and what it reaped: the job's peak."""
    user_s: float
    sys_s: float


class AgentLost(Exception):
    """The agent (or the connection to it) is gone."""


class NodeAgent:
    """One agent process on one node; any thread may start jobs through it."""

    def __init__(
        self,
        lines: Iterable[bytes],
        write: Callable[[bytes], None],
        close_input: Callable[[], None],
        name: str = "",
        abort: Callable[[], None] | None = None,
    ):
        """``abort`` drops the transport at once (default: ``close_input``), for an agent that no longer answers."""
        self._lines, self._write, self._close_input = lines, write, close_input
        self._abort = abort or close_input
        self.name = name
        self.chatter = ""
        """The last line printed before the agent ran (the login shell's: e.g. python3 not found)."""
        self._jobs: dict[bytes, queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.lost: str | None = None
        """Why the agent is gone (None while it runs)."""
        self.capacity: Capacity | None = None
        """The node's cores and memory, as the agent read them when it started (None: it could not)."""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"imgpipe-agent-{name}", daemon=True)
        self._reader.start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the agent said it runs; False if it ended first or took too long."""
        return self._ready.wait(timeout_s) and self.lost is None

    def _read(self) -> None:
        why = "the agent ended"
        try:
            for raw in self._lines:
                kind, _, rest = raw.rstrip(b"\r\n").partition(b" ")
                if not self._ready.is_set():
                    if kind == b"ready":  # lines before it are the login shell's own chatter
                        self.capacity = capacity_from_words(rest.decode("utf-8", "replace").split())
                        self._ready.set()
                    elif raw.strip():
                        self.chatter = raw.decode("utf-8", "replace").strip()[:300]
                    continue
                jid, _, arg = rest.partition(b" ")
                jobs = self._jobs.get(jid)
                if jobs is None:
                    continue
                if kind == b"o":
                    jobs.put((OUTPUT, arg.decode("utf-8", "replace")))
                elif kind == b"x":
                    status, max_rss, user, system = arg.split()
                    jobs.put((EXITED, Exited(int(status), int(max_rss), float(user), float(system))))
                elif kind == b"e":
                    jobs.put((NOT_STARTED, arg.decode("utf-8", "replace")))
        except Exception as err:  # any failure of the transport means the agent is lost
            why = str(err) or type(err).__name__
        with self._lock:
            self.lost = why
            waiting = list(self._jobs.values())
        self._ready.set()
        for jobs in waiting:
            jobs.put((LOST, why))

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self._write(data)

    def start(self, argv: list[str]) -> tuple[bytes, queue.SimpleQueue]:
        """Ask the agent to run ``argv``; returns the job's id and the queue of its messages.

        Raises :class:`AgentLost` if the request could not be sent (the job did not start).
        """
        jid = secrets.token_hex(6).encode()
        messages: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            if self.lost is not None:
                raise AgentLost(self.lost)
            self._jobs[jid] = messages
        try:
            self._send(b"run " + jid + b" " + json.dumps(list(argv)).encode() + b"\n")
        except Exception as err:
            self.forget(jid)
            raise AgentLost(str(err) or type(err).__name__) from None
        return jid, messages

    def tell(self, jid: bytes, line: str, close: bool = False) -> None:
        """A line to the job's stdin (its wrapper reads ``stop <grace>``); ``close`` ends its stdin."""
        try:
            self._send(b"in " + jid + b" " + line.encode() + b"\n" + (b"close " + jid + b"\n" if close else b""))
        except Exception:  # the agent is gone: its jobs are being stopped anyway
            pass

    def forget(self, jid: bytes) -> None:
        with self._lock:
            self._jobs.pop(jid, None)

    def abort(self) -> None:
        """Drop the agent without waiting: its jobs' queues get LOST, and on the node the
        lost session closes the agent's input, so the wrappers stop their jobs."""
        try:
            self._abort()
        except Exception:
            pass

    def shutdown(self, timeout_s: float = 2.0) -> bool:
        """End the agent's input (it stops what still runs and exits); True if it ended within ``timeout_s``."""
        try:
            self._close_input()
        except Exception:
            pass
        self._reader.join(timeout_s)
        return not self._reader.is_alive()
