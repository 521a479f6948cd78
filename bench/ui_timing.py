"""How long a page of the Prefect UI takes to show something, in a real headless Chromium.

Why: a night of thousands of task runs is inspected in the UI; whether its flow-run page
opens in a second or a minute is part of the scale benchmark. Chromium is driven over
its DevTools protocol (websockets, which Prefect already depends on): open the page,
poll a JavaScript condition every 50 ms, report the seconds until it is true.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def headless_chromium():
    """Yields the DevTools port of a headless Chromium of its own (profile in a temp folder), killed after."""
    from support.prefect_server import free_port

    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (make test-deps installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="imgpipe-bench-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("headless chromium did not open its DevTools port") from None
                    time.sleep(0.2)
            yield port
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # its renderer and GPU processes too
            proc.wait()


def seconds_until(port: int, url: str, condition: str, timeout_s: float = 180.0) -> tuple[float, object]:
    """Seconds from navigating a new tab to ``url`` until the JavaScript ``condition`` is
    truthy, and its value then; RuntimeError after ``timeout_s``."""
    from websockets.sync.client import connect

    request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
    target = json.loads(urllib.request.urlopen(request, timeout=10).read())
    ids = iter(range(1, 1_000_000))

    with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
        def call(method: str, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                message = json.loads(ws.recv(timeout=timeout_s))
                if message.get("id") == n:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return message["result"]

        t0 = time.perf_counter()
        call("Page.navigate", url=url)
        while True:
            value = call("Runtime.evaluate", expression=condition, returnByValue=True)["result"].get("value")
            if value:
                return time.perf_counter() - t0, value
            if time.perf_counter() - t0 > timeout_s:
                raise RuntimeError(f"{url}: {condition} not true after {timeout_s:.0f} s")
            time.sleep(0.05)
