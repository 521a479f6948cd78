"""Memory over a long run: nothing is kept per finished job beyond its result record.

A night is thousands of jobs in one flow run; what the process keeps per finished job
adds up (benchmark 12 measures it at 5 000 jobs). Counted here with the real flow: live
objects of each kind after 200 and after 400 finished jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_ssh import make_ms_dirs

from support.fake_wsclean import read_trace

pytestmark = pytest.mark.prefect

# imgpipe's command line with a listener: at each mark (jobs finished), the live objects of
# the kinds asked, and the size of fnmatch's pattern cache, are written to OUT.
DRIVER = """
import collections, fnmatch, gc, json, sys
from imgpipe.core import events
out, marks, kinds = sys.argv[1], {int(m) for m in sys.argv[2].split(",")}, sys.argv[3].split(",")
counts, done = {}, [0]
def count(event, payload):
    if event != "finished":
        return
    done[0] += 1
    if done[0] in marks:
        gc.collect()
        live = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        counts[done[0]] = {k: live[k] for k in kinds} | {"fnmatch patterns": fnmatch._compile_pattern.cache_info().currsize}
        json.dump(counts, open(out, "w"))
events.subscribe(count)
from imgpipe.cli.command import main
sys.argv = ["imgpipe", *sys.argv[4:]]
main()
"""

KINDS = ["State", "PrefectConcurrentFuture", "_Submission", "Pattern", "Event", "JobResult"]


def test_a_finished_job_leaves_only_its_result_record(run_imgpipe, fake_wsclean, write_config, tmp_path):
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("0")
    cfg = write_config(f"[worker]\nmax_concurrent = 4\nwsclean = '{fake}'\n"
                       f"[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp_path}/out'\n")
    ms = make_ms_dirs(tmp_path, 420)
    out = tmp_path / "counts.json"
    res = subprocess.run([sys.executable, "-c", DRIVER, str(out), "200,400", ",".join(KINDS), str(cfg), *ms],
                         env=run_imgpipe.base_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    assert sum(kind == "end" for _, _, kind, _ in read_trace(trace)) == 420
    counts = json.loads(out.read_text())
    early, late = counts["200"], counts["400"]
    grown = {kind: late[kind] - early[kind] for kind in early}
    print("live objects after 200 and 400 jobs:", early, late)
    # 200 more finished jobs: their results are kept (one JobResult each, plus those in flight)...
    assert 190 <= grown["JobResult"] <= 210, grown
    # ...and nothing else of theirs: no Prefect future, no task state (Prefect's own links
    # to task results, forgotten in sweeps), no cancel event of the task runner, no
    # submission, no compiled file pattern (before: +200 futures, submissions and events,
    # +400 states, +400 patterns)
    assert grown["PrefectConcurrentFuture"] <= 8 and grown["_Submission"] <= 8, grown
    assert grown["State"] <= 40, grown
    assert grown["Event"] <= 10, grown
    assert grown["Pattern"] <= 10 and grown["fnmatch patterns"] <= 10, grown
