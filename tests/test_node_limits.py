"""NodeLimits' calls to Prefect: a busy database's 503 is retried within milliseconds."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from imgpipe.orchestration.node_limits import one_try


class _BusyOnce(BaseHTTPRequestHandler):
    """A stand-in API: the first POST gets "503, retry" (as a busy SQLite gives), the next ones 200."""

    posts: list[float] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        # the client asks for a CSRF token first; 422 is what a server without CSRF protection says
        body = b'{"detail": "CSRF protection is disabled."}'
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _BusyOnce.posts.append(time.monotonic())
        code = 503 if len(_BusyOnce.posts) == 1 else 200
        body = json.dumps({"limits": [], "lease_id": "00000000-0000-0000-0000-000000000001"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def post(client) -> int:
    try:
        return client._client.post("/v2/concurrency_limits/increment-with-lease", json={}).status_code
    except httpx.HTTPStatusError as err:  # (Prefect's client raises on every error status)
        return err.response.status_code


def test_a_503_comes_back_at_once_instead_of_after_prefect_s_2_s_sleep():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BusyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_address[1]}/api"}), \
                get_client(sync_client=True) as client:
            one_try(client)
            began = time.monotonic()
            codes = post(client), post(client)
    finally:
        server.shutdown()
    assert codes == (503, 200)
    # one request each (no retry loop), and no sleep between them; Prefect's own client
    # sleeps 2 s after a 503 before it returns it, even with PREFECT_CLIENT_MAX_RETRIES = 0
    assert len(_BusyOnce.posts) == 2 and _BusyOnce.posts[1] - began < 1.0
