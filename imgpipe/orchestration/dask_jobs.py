"""Jobs on Dask workers (``[prefect] task_runner = 'dask'``), through prefect-dask.

Why the dispatcher still decides: per-node limits, run_on_file_host pinning, retries and
cool-downs are the same whatever runs the jobs. Dask only carries each job's task to a
worker on the node the dispatcher chose, by **worker restrictions**
(``client.submit(..., workers=[addresses], allow_other_workers=False)``); with
``nodes = 'dask'`` there is no restriction and Dask places each job on any worker
(``max_concurrent`` is then the cluster-wide number of jobs at once).

On the worker the job runs as a local process under the usual wrapper (log, accounting,
stop rules). Each named node's size is read on one of its workers when the run finds
them (``map_nodes``), so a job's share and admission are decided here, as for SSH nodes. Its Prefect task reports to this run's Prefect API (the URL travels with the
task), so it shows in the same flow run. A cancelled run sets a Dask ``Event`` that each
job's task watches: only this run's jobs stop, not those of other runs sharing the cluster.
"""

from __future__ import annotations

import socket
import threading
import uuid
from contextlib import ExitStack
from typing import Any

from imgpipe.core.errors import NodeError
from imgpipe.core.job_resources import Capacity
from imgpipe.core.nodes import DASK
from imgpipe.orchestration.prefect_internals import dask_future

STOP_POLL_S = 1.0
"""How often a job's task on a worker checks whether its run was cancelled."""


class DaskJobs:
    """A Dask task runner for the job tasks of one flow run (a context manager)."""

    def __init__(self, prefect_config, max_concurrent: int, logger):
        self.config, self.max_concurrent, self.logger = prefect_config, max_concurrent, logger
        self.stop_event_name = f"imgpipe-stop-{uuid.uuid4().hex}"
        self._stack = ExitStack()
        self._workers: dict[str, list[str]] = {}
        self._sizes: dict[str, Capacity | None] = {}
        self.client: Any = None
        """The Dask client of the run's cluster (``__enter__``)."""

    def __enter__(self) -> "DaskJobs":
        # Prefect and prefect-dask: check_cluster runs before Prefect is loaded
        from prefect.context import FlowRunContext
        from prefect.settings import PREFECT_API_URL, temporary_settings
        from prefect_dask import DaskTaskRunner

        cfg = self.config
        if cfg.dask_address:
            runner = DaskTaskRunner(address=cfg.dask_address)
        else:
            kwargs = dict(cfg.cluster_kwargs)
            if cfg.cluster_class is None and not kwargs:
                # WSClean runs as a child process: one worker whose threads are the job slots
                kwargs = {"n_workers": 1, "threads_per_worker": self.max_concurrent, "dashboard_address": None}
            runner = DaskTaskRunner(cluster_class=cfg.cluster_class, cluster_kwargs=kwargs)
        try:
            context = FlowRunContext.get()
            if context is not None and context.client is not None:
                # The workers' tasks report to this run's API, the embedded server's included
                self._stack.enter_context(temporary_settings({PREFECT_API_URL: str(context.client.api_url)}))
            self.runner = self._stack.enter_context(runner)
            self.client = self.runner.client
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def map_nodes(self, nodes: list[str]) -> dict[str, str]:
        """Find each node's Dask workers; returns ``{node: why}`` for nodes without one."""
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        self._workers, down = match_nodes(nodes, workers)
        self._sizes = {node: self._read_size(node, addresses, workers) for node, addresses in self._workers.items()}
        return down

    def capacity(self, host: str) -> Capacity | None:
        """A named node's cores and memory as read on its workers (None for ``dask``: any worker)."""
        return self._sizes.get(host)

    def _read_size(self, node: str, addresses: list[str], workers: dict[str, dict]) -> Capacity | None:
        """The machine of ``node``'s first worker as a job there sees it (the same reading as
        for this machine), its memory at most the sum of its workers' ``memory_limit``."""
        # imgpipe.facts: the function runs on the worker, which imports imgpipe to run the jobs anyway
        from imgpipe.facts.node_capacity import local_capacity

        try:
            size = self.client.run(local_capacity, workers=addresses[:1])[addresses[0]]
        except Exception as err:  # an old or broken worker: the node's jobs get no share
            self.logger.warning("%s: cannot read its cores and memory on its Dask worker (%s: %s)", node,
                                type(err).__name__, err)
            return None
        limits = [workers[a].get("memory_limit") or 0 for a in addresses]
        limit_mb = sum(limits) // (1024 * 1024) if all(limits) else 0
        if 0 < limit_mb < size.mem_mb:
            why = "Dask memory_limit" if size.limited_by == "machine" else f"{size.limited_by},Dask memory_limit"
            size = Capacity(size.cores, limit_mb, why)
        return size

    def submit(self, task, parameters: dict, host: str):
        """Submit a job's task to the workers of ``host`` (anywhere for ``dask``); a Prefect future."""
        workers = self._workers.get(host)
        future = self.client.submit(
            task, parameters=parameters, return_type="state", workers=workers, allow_other_workers=False, pure=False,
        )
        return dask_future(future)

    def stop(self) -> None:
        """Stop this run's jobs on every worker (they watch the run's stop event)."""
        # distributed: only for Dask runs
        from distributed import Event

        try:
            Event(self.stop_event_name, client=self.client).set()
        except Exception as err:  # the cluster is gone: its jobs went with it
            self.logger.warning("cannot tell the Dask workers to stop: %s", err)


def match_nodes(nodes: list[str], workers: dict[str, dict]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Node names → addresses of their Dask workers (``scheduler_info()['workers']``).

    A node matches a worker by the worker's name, its host, or the node's IP address.
    Returns ``(found, down)``; ``down`` says why for each node without a worker.
    """
    found: dict[str, list[str]] = {}
    down: dict[str, str] = {}
    for node in nodes:
        if node == DASK:
            if not workers:
                down[node] = f"{node}: the Dask cluster has no worker"
            continue
        ip = _address_of(node)
        matches = [a for a, w in workers.items() if node in (str(w.get("name")), w.get("host")) or (ip and ip == w.get("host"))]
        if matches:
            found[node] = matches
        else:
            known = ", ".join(sorted({f"{w.get('name')} on {w.get('host')}" for w in workers.values()})) or "none"
            down[node] = f"{node}: no Dask worker on this node (workers: {known})"
    return found, down


def check_cluster(address: str, nodes: list[str], skip_unreachable: bool, timeout_s: float = 10.0) -> dict[str, str]:
    """Before Prefect starts: reach the scheduler and find every node's workers.

    Returns ``{node: why}`` of nodes without a worker when ``skip_unreachable``; otherwise
    raises NodeError naming them (or the scheduler that does not answer).
    """
    # distributed: only to check a Dask cluster
    from distributed import Client


    try:
        with Client(address, timeout=timeout_s, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, TimeoutError) as err:
        raise NodeError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    _, down = match_nodes(nodes, workers)
    return allowed_down(down, skip_unreachable)


def allowed_down(down: dict[str, str], skip_unreachable: bool) -> dict[str, str]:
    """``down`` if the run may go on without those nodes; NodeError naming them otherwise."""
    if down and not skip_unreachable:
        raise NodeError(
            f"{len(down)} node(s) without a Dask worker: {'; '.join(down.values())} "
            "(set [worker] skip_unreachable_nodes = true to run on the other nodes)"
        )
    return down


def _address_of(node: str) -> str | None:
    try:
        return socket.gethostbyname(node)
    except OSError:
        return None


def watch_stop_event(name: str, stop: threading.Event, done: threading.Event) -> None:
    """On a Dask worker: set ``stop`` when the run's stop event is set, until ``done``."""
    # distributed: only on a Dask worker
    from distributed import Event, get_client

    event = Event(name, client=get_client())  # the worker's client is found in the task's thread only

    def watch():
        while not done.is_set():
            try:
                if event.wait(timeout=STOP_POLL_S):
                    stop.set()
                    return
            except Exception:  # scheduler gone: nobody left to ask us to stop
                return

    threading.Thread(target=watch, name="imgpipe-stop-watch", daemon=True).start()
