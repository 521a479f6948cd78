"""Largest jobs first ([worker] order): sized by the bytes of their MSs' main tables."""

from __future__ import annotations

import pytest

from imgpipe.core.config import WorkerConfig, load_config
from imgpipe.core.errors import ConfigError
from imgpipe.core.job_order import largest_first
from imgpipe.core.plan import Plan
from imgpipe.facts.ms_sizes import ms_bytes, ms_sizes

from support.jobs import make_job


def make_ms(folder, name, main_bytes, subtable_bytes=0):
    """An MS directory whose main-table files hold ``main_bytes`` and whose ANTENNA subtable holds ``subtable_bytes``."""
    ms = folder / name
    (ms / "ANTENNA").mkdir(parents=True)
    (ms / "table.dat").write_bytes(b"d" * 100)
    with open(ms / "table.f0", "wb") as f:
        f.truncate(main_bytes - 100)
    with open(ms / "ANTENNA" / "table.f0", "wb") as f:
        f.truncate(subtable_bytes)
    return str(ms)


def job_of(*ms, host=None):
    return make_job(host, ("wsclean", *ms), ms, name=ms[-1].rsplit("/", 1)[-1])


def test_an_ms_is_sized_by_its_main_table_alone(tmp_path):
    ms = make_ms(tmp_path, "a.MS", 5000, subtable_bytes=10**6)
    assert ms_bytes(ms) == 5000  # the big subtable is a directory: left out
    assert ms_bytes(str(tmp_path / "missing.MS")) == 0
    (tmp_path / "link.MS").symlink_to(ms)
    assert ms_bytes(str(tmp_path / "link.MS")) == 5000  # an MS given through a link is read through it


def test_jobs_go_largest_first_by_the_sum_of_their_ms_and_ties_keep_plan_order(tmp_path):
    small, mid, big = (make_ms(tmp_path, f"{n}.MS", b) for n, b in (("small", 1000), ("mid", 3000), ("big", 9000)))
    other_mid = make_ms(tmp_path, "mid2.MS", 3000)
    jobs = [job_of(small), job_of(mid), job_of(big), job_of(other_mid), job_of(small, small.replace("small", "nothing"))]
    combined = job_of(small, mid)  # 4000 bytes in two MSs: between big and mid
    ordered = largest_first([*jobs, combined], ms_sizes(ms for job in [*jobs, combined] for ms in job.ms))
    assert [j.ms for j in ordered] == [(big,), combined.ms, (mid,), (other_mid,), (small,), jobs[4].ms]


def test_the_dispatcher_sizes_jobs_only_when_some_must_wait(tmp_path, monkeypatch):
    from imgpipe.orchestration import dispatcher

    a, b, c = (make_ms(tmp_path, f"{n}.MS", s) for n, s in (("a", 1000), ("b", 2000), ("c", 3000)))
    plan = Plan((job_of(a), job_of(b), job_of(c)), pool=("n1",))
    order = dispatcher.Dispatcher.start_order
    assert [j.ms[0] for j in order(plan, WorkerConfig(nodes=("n1",), max_concurrent=2))] == [c, b, a]
    assert [j.ms[0] for j in order(plan, WorkerConfig(nodes=("n1",), max_concurrent=2, order="as_given"))] == [a, b, c]
    sized = []
    monkeypatch.setattr(dispatcher, "largest_first", lambda jobs, size: sized.append(jobs) or list(jobs))
    assert [j.ms[0] for j in order(plan, WorkerConfig(nodes=("n1",), max_concurrent=3))] == [a, b, c]
    assert sized == []  # every job starts at once: no MS is read


def test_the_dispatcher_starts_the_largest_waiting_job_when_a_slot_frees(tmp_path):
    from test_dispatcher import Limits, ok, run

    ms = [make_ms(tmp_path, f"o{i}.MS", size) for i, size in enumerate((1000, 5000, 3000, 9000, 2000))]
    plan = Plan(tuple(job_of(m) for m in ms), pool=("n1",))
    results, attempts = run(plan, WorkerConfig(nodes=("n1",), max_concurrent=1), ok, Limits(1))
    assert [a[0] for a in attempts] == [ms[3], ms[1], ms[2], ms[4], ms[0]]
    assert [r.job.ms[0] for r in results] == ms  # results stay in plan order
    results, attempts = run(plan, WorkerConfig(nodes=("n1",), max_concurrent=1, order="as_given"), ok, Limits(1))
    assert [a[0] for a in attempts] == ms


def test_order_must_be_one_of_the_two(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[worker]\norder = 'smallest_first'\n[wsclean]\nname = 'img'\n")
    with pytest.raises(ConfigError, match=r"\[worker\] order = 'smallest_first': must be 'largest_first' or 'as_given'"):
        load_config(cfg)
    cfg.write_text("[worker]\norder = 'as_given'\n[wsclean]\nname = 'img'\n")
    assert load_config(cfg).worker.order == "as_given"
    cfg.write_text("[wsclean]\nname = 'img'\n")
    assert load_config(cfg).worker.order == "largest_first"
