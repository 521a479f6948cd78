"""Read back what a flow run sent to Prefect, through its API (in a subprocess, as a user would)."""

from __future__ import annotations

import subprocess
import sys

_LOGS_OF_LAST_RUN = """
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort
with get_client(sync_client=True) as client:
    run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    offset = 0
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200, offset=offset)
        for log in logs:
            print(log.message)
        if len(logs) < 200:
            break
        offset += 200
"""


def logs_of_last_flow_run(env: dict) -> list[str]:
    """Every log message the latest flow run sent to Prefect."""
    res = subprocess.run([sys.executable, "-c", _LOGS_OF_LAST_RUN], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.splitlines()


_STATE_OF_LAST_RUN = """
from prefect import get_client
from prefect.client.schemas.sorting import FlowRunSort
with get_client(sync_client=True) as client:
    run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    print(run.state.type.value)
    print(run.state.message or "")
"""


def state_of_last_flow_run(env: dict) -> tuple[str, str]:
    """(state type, message) of the latest flow run, as Prefect's API says them: ``('CANCELLED', '...')``."""
    res = subprocess.run([sys.executable, "-c", _STATE_OF_LAST_RUN], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    kind, _, message = res.stdout.partition("\n")
    return kind, message.strip()
