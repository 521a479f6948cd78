"""The run's backends: made on first use, closed together, never shared between runs."""

from __future__ import annotations

import pickle

from imgpipe.backends import RunBackends
from imgpipe.backends.local import LocalBackend
from imgpipe.core.config import WorkerConfig

from support.jobs import make_job


def test_backends_are_made_on_first_use_and_closed_together():
    closed = []

    class Recording(LocalBackend):
        def close(self):
            closed.append("local")

    class Failing(LocalBackend):
        def close(self):
            raise RuntimeError("scancel is gone")

    with RunBackends(WorkerConfig()) as backends:
        assert list(backends) == [("backends", [])]
        assert backends.run_job(make_job(argv=("true",), out_dir="/tmp/imgpipe-test-backends")).ok
        assert list(backends) == [("backends", ["local"])]
        backends._made["local"] = Recording(backends.worker)
        backends._made["slurm"] = Failing(backends.worker)  # one close raising does not stop the others
    assert closed == ["local"] and list(backends) == [("backends", [])]


def test_a_copy_in_another_process_holds_nothing_of_the_run():
    """prefect-dask pickles the flow run's context (its parameters too) for every Dask task."""
    backends = RunBackends(WorkerConfig(nodes=("n1",)))
    backends.for_host("localhost")
    copy = pickle.loads(pickle.dumps(backends))
    assert copy.worker == backends.worker and list(copy) == [("backends", [])]


def test_two_runs_share_no_cancellation(tmp_path):
    first, second = RunBackends(WorkerConfig()), RunBackends(WorkerConfig())
    first.cancel_all(grace_s=0.1)  # (nothing running: it only marks the run cancelled)
    first.for_host("localhost").cancel(0.1)
    assert first.run_job(make_job(argv=("true",), out_dir=tmp_path)).status == "cancelled"
    assert second.run_job(make_job(argv=("true",), out_dir=tmp_path)).ok
