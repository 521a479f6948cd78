"""A Prefect deployment of this repository, driven as an operator would: the `prefect`
command line, a process worker, the flow run's state, logs and artifact through the API
(the deployment and outage tests)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from support.paths import REPO
from support.prefect_server import PREFECT, api


def prefect(env, *args, timeout=180) -> str:
    res = subprocess.run([PREFECT, "--no-prompt", *args], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"prefect {' '.join(args)}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
    return res.stdout

def start_worker(env, folder: Path) -> subprocess.Popen:
    """A process worker for the pool ``imgpipe`` (its log in ``folder/worker.log``)."""
    log = open(folder / "worker.log", "w")
    return subprocess.Popen([PREFECT, "worker", "start", "--pool", "imgpipe"], env=env, cwd=folder,
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

def run_deployment(env, name: str, *params: str) -> str:
    """``prefect deployment run`` with ``--param`` overrides; returns the flow run id."""
    out = prefect(env, "deployment", "run", name, *(arg for p in params for arg in ("--param", p)))
    return next(line.split()[-1] for line in out.splitlines() if "UUID" in line)

def final_state(env, run_id: str, timeout_s: float) -> str | None:
    """The flow run's state type once final (or the last seen after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = api(env, "GET", f"/flow_runs/{run_id}")["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(0.5)
    return state

def run_logs(env, run_id: str) -> list[str]:
    logs, offset = [], 0
    while True:
        page = api(env, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": offset})
        logs += [entry["message"] for entry in page]
        if len(page) < 200:
            return logs
        offset += 200

def summary_artifact(env, run_id: str) -> str:
    found = api(env, "POST", "/artifacts/filter",
                {"artifacts": {"key": {"any_": ["imgpipe-summary"]}, "flow_run_id": {"any_": [run_id]}}})
    assert len(found) == 1, found
    return found[0]["data"]


def deploy_manual(server_env: dict, fake: Path, folder: Path) -> tuple[dict, Path]:
    """The `manual` deployment of this repository, its config (``folder/c.toml``) imaging
    ``folder/obs.MS`` with ``fake`` into ``folder/out``; returns (the env of its
    clients and worker, the MS)."""
    env = {**server_env, "IMGPIPE_REPO": str(REPO), "IMGPIPE_CONFIG": str(folder / "c.toml")}
    ms = folder / "obs.MS"
    ms.mkdir()
    (folder / "c.toml").write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'img'\nout-dir = '{folder}/out'\n")
    prefect(env, "work-pool", "create", "imgpipe", "--type", "process")
    prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "manual")
    return env, ms


def first_job_pid(trace: Path, timeout_s: float = 180) -> int:
    """The pid of the first fake WSClean of ``trace``, once it has started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not trace.exists():
        time.sleep(0.5)
    return int(trace.read_text().split()[1])
