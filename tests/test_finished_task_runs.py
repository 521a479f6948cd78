"""FinishedTaskRuns: Prefect's links from task results to their task runs are dropped for
the task runs told, and only those (a real flow run, in a process of its own)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imgpipe.orchestration.finished_task_runs import FinishedTaskRuns

pytestmark = pytest.mark.prefect

NIGHT = """
import json
from dataclasses import dataclass
from prefect import flow, task
from prefect.context import FlowRunContext
from imgpipe.orchestration.finished_task_runs import FinishedTaskRuns

@dataclass
class Out:
    name: str
    values: list

@task
def make(i: int) -> Out:
    return Out(f"job{i}", [i, i + 1])

def entries_of(context, task_run_id):
    return sum(1 for state, *_ in context.run_results.values() if state.state_details.task_run_id == task_run_id)

@flow
def night():
    context = FlowRunContext.get()
    events = context.task_runner._cancel_events
    futures = [make.submit(i) for i in range(5)]
    for future in futures:
        future.wait()
    ids = [f.task_run_id for f in futures]
    linked = [entries_of(context, i) for i in ids]
    evented = [i in events for i in ids]
    with_assets = [i in context.task_run_assets for i in ids]
    finished = FinishedTaskRuns(every=3)
    finished.forget(ids[0])
    finished.forget(ids[1])
    before_sweep = entries_of(context, ids[0])
    finished.forget(ids[2])  # the third: a sweep
    after_sweep = [entries_of(context, i) for i in ids]
    evented_after = [i in events for i in ids]
    with_assets_after = [i in context.task_run_assets for i in ids]
    finished.forget(None)  # (a future without a task run id: nothing to do)
    return dict(linked=linked, evented=evented, evented_after=evented_after,
                with_assets=with_assets, with_assets_after=with_assets_after, before_sweep=before_sweep, after_sweep=after_sweep, nothing_told=finished.sweep())

print("RESULT", json.dumps(night()))
"""


def test_told_task_runs_lose_their_links_at_each_sweep(run_imgpipe, tmp_path):
    res = subprocess.run([sys.executable, "-c", NIGHT], env=run_imgpipe.base_env(), cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.split("RESULT", 1)[1])
    assert all(n >= 1 for n in out["linked"]), out  # Prefect links each result (and its fields) to its task run
    assert out["before_sweep"] >= 1, out  # kept until the sweep
    assert out["after_sweep"][:3] == [0, 0, 0] and all(n >= 1 for n in out["after_sweep"][3:]), out
    assert out["evented"] == [True] * 5, out  # the task runner keeps a cancel event per task run
    assert out["evented_after"] == [False] * 3 + [True] * 2, out
    assert out["with_assets"] == [True] * 5, out  # and an entry for the assets it hands downstream
    assert out["with_assets_after"] == [False] * 3 + [True] * 2, out
    assert out["nothing_told"] == 0


def test_outside_a_flow_run_a_sweep_does_nothing():
    finished = FinishedTaskRuns(every=1)
    finished.forget("some-id")
    assert finished.sweep() == 0
