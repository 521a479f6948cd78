"""A deployment run's console that no reader's death can break.

A Prefect process worker reads its flow run's output through a pipe. If the worker dies
(killed outright, its machine's service manager restarting it), the flow run goes on,
orphaned, and its next write to that pipe fails (EPIPE). Prefect's console handler
writes through rich, whose answer to a broken pipe is ``SystemExit(1)``: the night's
run died there, stopping a healthy WSClean minutes before its end.

So a deployment run's stdout and stderr are relayed: the process writes into pipes of
its own, read by a thread that passes the bytes on to the worker while it reads them,
and drops them once it is gone. Every log line still reaches the Prefect API and each
job's own log file; only the worker's copy of the console is lost with the worker.
"""

from __future__ import annotations

import atexit
import os
import threading

_CHUNK = 65536


def _relay(read_fd: int, out_fd: int) -> None:
    broken = False
    while chunk := os.read(read_fd, _CHUNK):
        if broken:
            continue
        try:
            while chunk:
                chunk = chunk[os.write(out_fd, chunk):]
        except OSError:  # the reader is gone: from now on, nothing is passed on
            broken = True
    os.close(read_fd)


def relay_console(fds: tuple[int, ...] = (1, 2)) -> None:
    """From now on, a write to ``fds`` never fails because their reader is gone (see the
    module's docstring). At exit, what is still in the pipes is passed on first (at most
    2 s)."""
    relays = []
    for fd in fds:
        original = os.dup(fd)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)
        os.close(write_fd)
        thread = threading.Thread(target=_relay, args=(read_fd, original), name=f"imgpipe-console-relay-{fd}", daemon=True)
        thread.start()
        relays.append((fd, original, thread))

    def drain() -> None:
        for fd, original, thread in relays:
            try:
                os.dup2(original, fd)  # (the pipe's last write end closes: the relay ends once it has passed all on)
            except OSError:
                continue
            thread.join(2.0)

    atexit.register(drain)
