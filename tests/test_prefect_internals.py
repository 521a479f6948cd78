"""Every Prefect internal imgpipe uses (``imgpipe.orchestration.prefect_internals``) is
where it looks for it in the installed Prefect, and works; and nothing else in imgpipe
touches Prefect's internals."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import uuid4

import httpx
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from imgpipe.orchestration import prefect_internals as internals

REPO = Path(__file__).resolve().parent.parent


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
            internals.send_each_request_once(client)
            began = time.monotonic()
            codes = post(client), post(client)
    finally:
        server.shutdown()
    assert codes == (503, 200)
    # one request each (no retry loop), and no sleep between them; Prefect's own client
    # sleeps 2 s after a 503 before it returns it, even with PREFECT_CLIENT_MAX_RETRIES = 0
    assert len(_BusyOnce.posts) == 2 and _BusyOnce.posts[1] - began < 1.0


# -- the server as a process --------------------------------------------------------------

def _source(module: str) -> str:
    return inspect.getsource(importlib.import_module(module))


def test_the_server_app_factory_and_its_environment_are_prefect_s():
    module, factory = internals.SERVER_APP.split(":")
    assert callable(getattr(importlib.import_module(module), factory))
    source = _source(module)
    for name in (*internals.SERVER_ENV, *internals.EPHEMERAL_ENV):
        assert f'"{name}"' in source, name  # read by the app factory


def test_the_background_server_s_pid_file_is_prefect_s():
    from prefect.cli import _server_utils

    assert _server_utils.SERVER_PID_FILE_NAME == internals.PID_FILE
    assert internals.is_prefect_server(["python", "-m", "uvicorn", "--factory", internals.SERVER_APP])
    assert not internals.is_prefect_server(["python", "-m", "http.server"])


# -- node-slot leases -----------------------------------------------------------------------

def test_the_leases_prefect_writes_on_disk_are_found_once_expired(tmp_path):
    storage = importlib.import_module(internals.FILESYSTEM_LEASES).ConcurrencyLeaseStorage(tmp_path / internals.LEASE_FOLDER)
    short = asyncio.run(storage.create_lease([uuid4()], timedelta(seconds=1)))
    long = asyncio.run(storage.create_lease([uuid4()], timedelta(hours=1)))
    later = datetime.now(timezone.utc) + timedelta(seconds=2)
    assert internals.expired_leases(tmp_path, later) == [str(short.id)]
    assert str(long.id) not in internals.expired_leases(tmp_path, later)
    assert internals.expired_leases(tmp_path / "nowhere", later) == []


def test_prefect_defaults_to_lease_files_in_its_home():
    assert 'prefect_home / "concurrency_leases"' in _source(internals.FILESYSTEM_LEASES)


# -- log texts --------------------------------------------------------------------------------

def test_the_log_lines_imgpipe_leaves_off_the_terminal_are_prefect_s():
    engines = _source("prefect.flow_engine") + _source("prefect.task_engine")
    assert f'f"{internals.VIEW_AT}{{flow_run_url}}"' in engines
    assert f'f"{internals.FINISHED_IN_STATE} {{display_state}}"' in engines
    # "Task run failed with {failure_type}: ..." where a task returned a Failed state
    assert 'f"Task run failed with {failure_type}: {exc_or_state!r}"' in engines
    assert 'failure_type = "exception" if isinstance(exc_or_state, Exception) else "state"' in engines
    assert internals.TASK_FAILED_WITH_STATE == "Task run failed with state: "
    assert f'f"{internals.STILL_PROCESSING}{{queue_size}} items remaining..."' in _source("prefect._internal.concurrency.services")


# -- in the flow's process ------------------------------------------------------------------

def test_the_log_and_event_workers_can_be_drained():
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    assert callable(APILogWorker.drain_all) and callable(EventsWorker.drain_all)
    with warnings.catch_warnings():
        warnings.simplefilter("error", internals.PrefectInternalMissing)
        internals.drain_logs_and_events(timeout_s=1)  # nothing queued: returns at once


def test_a_run_logger_for_the_api_only_keeps_the_run_s_context():
    import logging

    run_logger = logging.LoggerAdapter(logging.getLogger("x"), {"flow_run_id": "abc", "task_run_id": "def"})
    output = internals.api_only_logger("imgpipe.test_output", run_logger)
    assert output.extra == {"flow_run_id": "abc", "task_run_id": "def"}
    from prefect.logging.handlers import APILogHandler

    assert [type(h) for h in output.logger.handlers] == [APILogHandler] and not output.logger.propagate


def test_a_flow_run_s_finished_task_runs_are_forgotten():
    """The fields ``forget_task_runs`` empties are where it looks, in a real flow run
    (no server needed: the tasks are not submitted)."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    fields = FlowRunContext.model_fields
    assert "run_results" in fields and "task_run_assets" in fields
    runner = ThreadPoolTaskRunner(max_workers=1)
    assert isinstance(runner._cancel_events, dict)


def test_a_dask_future_is_made_as_prefect_dask_makes_it():
    from prefect_dask.task_runners import PrefectDaskFuture

    parameters = inspect.signature(PrefectDaskFuture).parameters
    assert "wrapped_future" in parameters and "task_run_id" in parameters


def test_a_missing_internal_is_said_once_with_what_is_lost():
    class Client:
        pass

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("default")
        for _ in range(3):
            internals.send_each_request_once(Client())
    assert len(said) == 1 and issubclass(said[0].category, internals.PrefectInternalMissing)
    assert "PrefectClient._client._send_with_retry" in str(said[0].message)
    assert "wait out Prefect's own retries" in str(said[0].message)


# -- nothing else touches them ----------------------------------------------------------------

PUBLIC_PREFECT = {
    "prefect": {"flow", "task", "get_run_logger", "get_client", "Flow"},
    "prefect.artifacts": None, "prefect.cache_policies": None, "prefect.client.orchestration": {"get_client"},
    "prefect.client.schemas.actions": None, "prefect.exceptions": None, "prefect.runtime": None,
    "prefect.settings": None, "prefect.states": None, "prefect.task_runners": {"ThreadPoolTaskRunner"},
    "prefect.utilities.annotations": {"quote"}, "prefect.context": {"FlowRunContext"},
    "prefect.logging.handlers": {"PrefectConsoleHandler"}, "prefect_dask": {"DaskTaskRunner"},
}
"""What imgpipe may import from Prefect outside the seam (None: any public name)."""

PRIVATE_TEXTS = ("PREFECT__", "create_app", "server.pid", "memo_store", "lease_storage.filesystem", "concurrency_leases",
                 "View at ", "Finished in state", "Still processing", "Task run failed with", "_send_with_retry", "_add_csrf", "_cancel_events",
                 "run_results", "task_run_assets", "drain_all", "PrefectDaskFuture", "APILogWorker", "EventsWorker",
                 "APILogHandler", "PrefectLogAdapter", "SettingsContext")
"""Names and texts of Prefect's internals (as code or strings) that only the seam may hold."""


def _code_words(tree: ast.AST) -> set[str]:
    """The names and strings of a module's code (not its docstrings or comments, which may name them)."""
    docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.add(node.value)
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.add(node.name)
    return words


def test_nothing_outside_the_seam_touches_prefect_s_internals():
    seam = REPO / "imgpipe" / "orchestration" / "prefect_internals.py"
    found = []
    for path in sorted((REPO / "imgpipe").rglob("*.py")):
        if path == seam:
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("prefect", "prefect_dask"):
                allowed = PUBLIC_PREFECT.get(node.module, set())
                for alias in node.names:
                    if alias.name.startswith("_") or (allowed is not None and alias.name not in allowed):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in ("prefect", "prefect_dask"):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: import {alias.name}")
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if isinstance(node.value, ast.Name) and node.value.id in ("prefect", "prefect_dask"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
        for private in PRIVATE_TEXTS:
            if any(private in word for word in _code_words(tree)):
                found.append(f"{path.relative_to(REPO)}: {private!r}")
    assert not found, "Prefect internals outside imgpipe/orchestration/prefect_internals.py:\n" + "\n".join(found)
