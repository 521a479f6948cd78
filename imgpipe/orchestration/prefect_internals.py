"""Every use imgpipe makes of a Prefect name, file, setting value or log text that Prefect
does not document as public: here and nowhere else (``tests/test_prefect_seam.py``
checks both: that nothing outside this module touches them, and that each is still where
this module looks for it in the installed Prefect).

Each entry says which public API is missing. When the installed Prefect lacks one,
imgpipe warns once (:class:`PrefectInternalMissing`, naming it and what is lost) and
goes on without it: a missing internal costs speed or memory, never a run.

This module imports Prefect only inside the functions that need it: the embedded and
kept servers use its constants before Prefect is imported.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

# -- the server as a process (no Prefect import) ----------------------------------------

SERVER_APP = "prefect.server.api.server:create_app"
"""The app factory ``prefect server start`` hands uvicorn. Missing public API: starting
Prefect's server in the background without importing Prefect (its CLI imports it all)."""

SERVER_ENV = {"PREFECT__SERVER_FINAL": "1"}
"""What ``prefect server start`` sets for the app it serves (its last stage of settings).
Missing public API: as for ``SERVER_APP``."""

EPHEMERAL_ENV = {"PREFECT__SERVER_EPHEMERAL": "1"}
"""What Prefect's own temporary server is started with (fewer services, no telemetry).
Missing public API: as for ``SERVER_APP``."""

PID_FILE = "server.pid"
"""The pid file of ``prefect server start --background`` in PREFECT_HOME (``prefect
server stop`` reads it). Missing public API: finding the background server."""


def is_prefect_server(argv: list[str]) -> bool:
    """Is this process command line a Prefect server (the background one, or imgpipe's)?"""
    return SERVER_APP in argv


# -- node-slot leases -------------------------------------------------------------------

FILESYSTEM_LEASES = "prefect.server.concurrency.lease_storage.filesystem"
"""The module of Prefect's lease storage on disk, the value of
``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE`` that keeps leases across a server's
restart. Missing public API: a documented name for it."""

LEASE_FOLDER = "concurrency_leases"
"""Where that storage writes one JSON file per lease, under PREFECT_HOME. Missing public
API: listing the expired leases of a limit (a ``prefect server`` revokes them itself;
the embedded one, which runs no services, does not)."""


def expired_leases(home: Path, now) -> list[str]:
    """Ids of the leases on disk under ``home`` whose expiration is before ``now`` (an aware
    datetime). None on disk is not a sign that Prefect moved them: a run whose server is
    a ``prefect server`` of another PREFECT_HOME finds none here (that server revokes
    expired leases itself); a moved folder is caught by the seam's test instead."""
    # json and datetime: stdlib, here only because the lease files are read here
    import json
    from datetime import datetime

    folder = home / LEASE_FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if path.name == "expirations.json":
            continue
        try:
            lease = json.loads(path.read_text())
            if datetime.fromisoformat(lease["expiration"]) < now:
                found.append(str(lease["id"]))
        except (OSError, ValueError, KeyError, TypeError):  # a lease file being written or removed meanwhile
            continue
    return found


# -- log texts --------------------------------------------------------------------------

VIEW_AT = "View at "
"""How the flow engine's line with the run's UI link begins. Missing public API: a
setting to leave it out (it points at an embedded server gone when the run ends)."""

FINISHED_IN_STATE = "Finished in state"
"""How the engine's line at each task and flow run's end begins. Missing public API: a
level or logger of its own, to leave it off a terminal."""

TASK_FAILED_WITH_STATE = "Task run failed with state: "
"""The task engine's line when a task returns a Failed state (the whole state's repr).
Missing public API: as for ``FINISHED_IN_STATE``."""

STILL_PROCESSING = "Still processing items: "
"""What Prefect's log and event workers say while they drain. Missing public API: as
for ``FINISHED_IN_STATE``."""


# -- warnings ---------------------------------------------------------------------------

class PrefectInternalMissing(UserWarning):
    """A Prefect internal imgpipe uses is not in the installed Prefect."""


def missing(name: str, lost: str) -> None:
    """Warn (once per process: Python's warning registry) that ``name`` is gone and what is lost."""
    warnings.warn(f"the installed Prefect has no {name}: {lost} (imgpipe goes on without it)", PrefectInternalMissing,
                  stacklevel=3)


# -- in the process that runs the flow (Prefect imported) ------------------------------

def send_each_request_once(client) -> None:
    """Make Prefect's sync ``client`` send each request once: no retry loop, and no 2 s
    sleep after a 503 "database busy" (node slots retry within milliseconds instead).
    The CSRF token, which that loop adds, is still added. Missing public API: a client
    without retries (``PREFECT_CLIENT_MAX_RETRIES = 0`` still sleeps once)."""
    http = getattr(client, "_client", None)
    if http is None or not hasattr(http, "_send_with_retry") or not hasattr(http, "_add_csrf_headers"):
        missing("PrefectClient._client._send_with_retry", "node-slot requests wait out Prefect's own retries")
        return

    def send_once(request, send, send_args, send_kwargs, retry_codes=(), retry_exceptions=()):
        if getattr(http, "enable_csrf_support", False) and request.method.lower() in {"post", "put", "patch", "delete"}:
            http._add_csrf_headers(request=request)
        return send(request, *send_args, **send_kwargs)

    http._send_with_retry = send_once


def forget_task_runs(task_run_ids: set) -> int:
    """Drop what the running flow run keeps of these finished task runs: their results
    (``FlowRunContext.run_results``, kept to link later tasks' inputs,
    PrefectHQ/prefect#12668), their asset sets (``FlowRunContext.task_run_assets``, where
    this Prefect has them) and their cancel events (``ThreadPoolTaskRunner._cancel_events``);
    returns how many results went. Missing public API: a task run whose result is not
    kept for input linking."""
    # Prefect: imported by the flow that calls this
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    if context is None or not task_run_ids:
        return 0
    lost = "a night's memory grows with its job count"
    per_task_run = [("FlowRunContext.task_run_assets", getattr(context, "task_run_assets", {}))]
    if isinstance(context.task_runner, ThreadPoolTaskRunner):
        per_task_run.append(("ThreadPoolTaskRunner._cancel_events", getattr(context.task_runner, "_cancel_events", None)))
    for name, table in per_task_run:
        if not isinstance(table, dict):
            missing(f"{name} as a dict", lost)
            continue
        for task_run_id in task_run_ids:
            table.pop(task_run_id, None)
    entries = getattr(context, "run_results", None)
    if not isinstance(entries, dict):
        missing("FlowRunContext.run_results as a dict", lost)
        return 0
    gone = 0
    for key, entry in list(entries.items()):  # (task threads add entries meanwhile: dict calls are atomic)
        details = getattr(entry[0], "state_details", None) if isinstance(entry, tuple) and entry else None
        if getattr(details, "task_run_id", None) in task_run_ids:
            entries.pop(key, None)
            gone += 1
    return gone


def drain_logs_and_events(timeout_s: float = 5.0, events: bool = True) -> None:
    """Send the logs (and events) Prefect's background workers still hold, now. Missing
    public API: flushing them (they are sent at the process's exit, which imgpipe's quick
    exit and a Dask worker's batching come before)."""
    # Prefect: the caller has imported it
    from prefect.logging import handlers

    workers = [getattr(handlers, "APILogWorker", None)]
    if events:
        # (as above)
        from prefect.events import worker

        workers.append(getattr(worker, "EventsWorker", None))
    for found in workers:
        if found is None or not hasattr(found, "drain_all"):
            missing("APILogWorker/EventsWorker.drain_all", "the last log lines of a run may not reach the server")
            continue
        found.drain_all(timeout=timeout_s)


def api_only_logger(name: str, run_logger: logging.Logger | logging.LoggerAdapter) -> logging.LoggerAdapter:
    """A logger (``name``) whose lines go to the run's log in Prefect but not to the
    console, in ``run_logger``'s flow or task run. Missing public API: a run logger
    without the console handler."""
    # Prefect: the caller has imported it
    from prefect.logging.handlers import APILogHandler
    from prefect.logging.loggers import PrefectLogAdapter

    logger = logging.getLogger(name)
    if not logger.handlers:
        logger.addHandler(APILogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return PrefectLogAdapter(logger, extra=dict(getattr(run_logger, "extra", {}) or {}))


def dask_future(future) -> Any:
    """A Prefect future for a task submitted to Dask by ``Client.submit`` (to a node's own
    workers). Missing public API: ``DaskTaskRunner.submit`` choosing workers."""
    # prefect-dask: a Dask run's
    from prefect_dask.task_runners import PrefectDaskFuture

    return PrefectDaskFuture(wrapped_future=future, task_run_id=future.task_run_id)
