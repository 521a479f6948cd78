"""A real Dask cluster on 127.0.0.1: one ``dask scheduler`` and named ``dask worker`` processes.

Each worker runs with ``IMGPIPE_NODE=<its name>`` in its environment, which the jobs it
starts inherit, so a test can tell which worker ran a job. Every process is stopped
(its whole process group) at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


class DaskCluster:
    def __init__(self, folder: Path, workers: dict[str, int]):
        """``workers``: name → threads."""
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        env = {**os.environ, "PREFECT_HOME": str(folder / "prefect"), "DASK_DISTRIBUTED__WORKER__DAEMON": "false"}
        env.pop("PREFECT_API_URL", None)
        self._start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(self.scheduler_file)], env, "scheduler")
        deadline = time.monotonic() + 60
        while not self.scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for name, threads in workers.items():
            self._start(["worker", "--scheduler-file", str(self.scheduler_file), "--name", name, "--nthreads", str(threads),
                         "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"],
                        {**env, "IMGPIPE_NODE": name}, name)
        self.wait_for_workers(len(workers))

    def _start(self, args: list[str], env: dict, log: str) -> None:
        out = open(self.folder / f"{log}.log", "w")
        self.procs.append(subprocess.Popen([DASK, *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.folder))

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs[1:]]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
