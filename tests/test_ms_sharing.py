"""One job per Measurement Set at a time, within a run and across runs; per-job scratch.

The science check of the cross-run test is the real WSClean's: two runs image one MS
at once, each image has its source in place, and no temporary file is left.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgpipe.products.fits_peak import pixel_distance

from support.fake_wsclean import read_trace
from support.markers import requires_wsclean
from support.sky import SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]

TRACING_WSCLEAN = """#!/bin/bash
# The real wsclean, its run recorded: start and end times, and what its -temp-dir held meanwhile.
if [ $# -eq 0 ]; then exec wsclean; fi
for ((i = 1; i < $#; i++)); do [ "${!i}" = -temp-dir ] && { j=$((i + 1)); tmp=${!j}; }; done
echo "start $(date +%s.%N) $$" >> TRACE
# the first WSClean holds the MS until the test says go (once the other run waits for it)
if [ ! -e TRACE.first ]; then : > TRACE.first; for _ in $(seq 1200); do [ -e TRACE.go ] && break; sleep 0.1; done; fi
wsclean "$@" &
pid=$!
while kill -0 "$pid" 2> /dev/null; do ls -A "$tmp" >> TRACE.temp 2> /dev/null; sleep 0.05; done
wait "$pid"; rc=$?
echo "end $(date +%s.%N) $$" >> TRACE
exit "$rc"
"""


WAIT = "waiting for SW01.MS, in use by another imgpipe run"


def intervals(trace: Path) -> list[tuple[float, float]]:
    rows = [line.split() for line in trace.read_text().splitlines()]
    starts = {pid: float(t) for kind, t, pid in rows if kind == "start"}
    return sorted((starts[pid], float(t)) for kind, t, pid in rows if kind == "end")


def leftovers(folder: Path) -> list[str]:
    """WSClean's temporary files (reorder parts, their metadata) under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*.tmp"))


def test_two_runs_on_one_ms_take_turns_and_both_images_are_right(run_imgpipe, ms_copy, tmp_path, prefect_home):
    """A low- and a high-resolution config on the same night, started together with one
    PREFECT_HOME: their WSCleans never overlap, both find the source, no .tmp is left."""
    (ms,) = ms_copy("SW01.MS")
    tracer = tmp_path / "tracing-wsclean"
    trace = tmp_path / "trace"
    tracer.write_text(TRACING_WSCLEAN.replace("TRACE", str(trace)))
    tracer.chmod(0o755)
    scratch = tmp_path / "scratch"
    procs, logs = [], []
    for name, size, scale in (("low", 96, "2amin"), ("high", 192, "1amin")):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(
            f"[worker]\nwsclean = '{tracer}'\ntemp_dir = '{scratch}'\ntemp_min_free = '1MB'\n"
            f"[wsclean]\nname = '{name}'\nout-dir = '{tmp_path}/images'\nsize = '{size} {size}'\nscale = '{scale}'\n"
            "niter = 300\nmgain = 0.8\nchannels-out = 2\nj = 1\n"  # 2 channels: WSClean reorders (temp files)
        )
        logs.append(tmp_path / f"{name}.stderr")
        with logs[-1].open("w") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "imgpipe", str(cfg), str(ms)], cwd=tmp_path,
                                          env=run_imgpipe.base_env(), stdout=subprocess.DEVNULL, stderr=err,
                                          stdin=subprocess.DEVNULL))
    # whichever run gets the MS first holds it until the other says it waits for it
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not any(WAIT in log.read_text() for log in logs):
        assert all(proc.poll() is None for proc in procs), [log.read_text()[-2000:] for log in logs]
        time.sleep(0.2)
    trace.with_suffix(".go").touch()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    (a_start, a_end), (b_start, b_end) = intervals(trace)
    assert a_end <= b_start, "two WSCleans ran on one MS at the same moment"
    assert any(WAIT in log.read_text() for log in logs)
    for name in ("low", "high"):
        assert pixel_distance(str(tmp_path / "images" / f"{name}-MFS-image.fits"), SOURCE_RA, SOURCE_DEC) <= 1.0
    # the reorder files went to the jobs' own scratch folders, which are gone now
    seen = trace.with_suffix(".temp").read_text()
    assert "SW01.MS-part0000-I-b0.tmp" in seen
    assert leftovers(ms.parent) == [] and list(scratch.iterdir()) == []
    log = (tmp_path / "images" / "low.log").read_text()
    assert f"imgpipe: scratch folder {scratch}/imgpipe-low-" in log
    # the MS's lock in Prefect was deleted with the last job that needed it
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        assert db.execute("SELECT count(*) FROM concurrency_limit_v2 WHERE name LIKE 'imgpipe-ms-%'").fetchone() == (0,)


DATA_HANDLER = """
[data_level_path]
L2 = '{root}/%OBS_ID%'
[spectral_windows]
SW01 = [106, 108]
SW02 = [146, 147]
SW03 = [186, 187]
SW_ALL = ['SW01', 'SW02']
[obs_ids]
'20231201_NT04' = ['node101', 'node101', 'node101']
"""


NAMED_FAKE = """#!/bin/bash
# A fake WSClean that records 'start|end <time> <-name value>' and sleeps a second.
if [ $# -eq 0 ]; then exec wsclean; fi
echo "start $(date +%s.%N) $2" >> TRACE
sleep 1
echo "end $(date +%s.%N) $2" >> TRACE
"""


def composite_config(tmp_path: Path, sim_dir: Path) -> tuple[Path, Path]:
    night = tmp_path / "data" / "20231201_NT04"
    night.mkdir(parents=True)
    for sw in ("SW01", "SW02", "SW03"):
        os.symlink(sim_dir / f"{sw}.MS", night / f"{sw}.MS")  # (the fake reads nothing)
    (tmp_path / "dh.toml").write_text(DATA_HANDLER.format(root=tmp_path / "data"))
    fake, trace = tmp_path / "named-fake", tmp_path / "trace"
    fake.write_text(NAMED_FAKE.replace("TRACE", str(trace)))
    fake.chmod(0o755)
    cfg = tmp_path / "img.toml"
    cfg.write_text(
        f"[worker]\nmax_concurrent = 2\nwsclean = '{fake}'\norder = 'as_given'\n"
        f"[data_handler]\nconfig_file = '{tmp_path / 'dh.toml'}'\ndata_level = 'L2'\n"
        f"[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/images/$sw$'\n"
    )
    return cfg, trace


def test_a_composite_sw_and_its_members_in_one_run_take_turns(run_imgpipe, sim_dir, tmp_path):
    """'2023*:SW*' with --combine: SW_ALL reads SW01 and SW02. Neither member runs with it,
    and its free slot goes to SW03 meanwhile rather than staying idle."""
    cfg, trace = composite_config(tmp_path, sim_dir)
    dry = run_imgpipe(cfg, "2023*:SW*", "--combine", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ("imgpipe: note: SW01.MS is read by 2 jobs (SW01 20231201_NT04 @ localhost, SW_ALL 20231201_NT04 @ "
            "localhost): they run one at a time") in dry.stderr
    res = run_imgpipe(cfg, "2023*:SW*", "--combine")
    assert res.returncode == 0, res.stderr[-3000:]
    spans: dict[str, dict[str, float]] = {}
    for line in trace.read_text().splitlines():
        kind, t, name = line.split()
        spans.setdefault(Path(name).parent.name, {})[kind] = float(t)
    assert sorted(spans) == ["SW01", "SW02", "SW03", "SW_ALL"]
    composite = spans["SW_ALL"]
    for member in ("SW01", "SW02"):
        other = spans[member]
        assert other["end"] <= composite["start"] or other["start"] >= composite["end"], f"{member} ran with SW_ALL"
    # while a job waited for its MS, the other slot did not stay idle
    busy = sorted(spans.values(), key=lambda s: s["start"])
    assert all(later["start"] < earlier["end"] for earlier, later in zip(busy[::2], busy[1::2], strict=True))
    assert "waiting for SW01.MS, in use by" in res.stderr


def test_runs_on_two_machines_sharing_a_prefect_server_take_turns(fake_wsclean, tmp_path):
    """Two runs against one real `prefect server` with `[prefect] ms_locks = 'server'`, each
    with a temp folder of its own (so this machine's locks cannot see each other: as on two
    machines). Prefect's MS limit keeps them apart, and is deleted once the last job on
    that MS has ended."""
    from support.prefect_server import api, running_server

    fake, trace = fake_wsclean
    trace.with_suffix(".hold").touch()  # a's job holds the MS until b says it waits for it
    ms = tmp_path / "data" / "SW01.MS"
    ms.mkdir(parents=True)
    with running_server(tmp_path / "server-home", tmp_path / "server.log") as server_env:
        procs, logs = [], []
        for run in ("a", "b"):
            (tmp_path / run / "tmp").mkdir(parents=True)
            cfg = tmp_path / run / "img.toml"
            cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[prefect]\nms_locks = 'server'\n"
                           f"[wsclean]\nname = '{run}'\nout-dir = '{tmp_path}/images'\n")
            logs.append(tmp_path / run / "stderr")
            env = {**server_env, "TMPDIR": str(tmp_path / run / "tmp"), "XDG_CACHE_HOME": str(tmp_path / run)}
            with logs[-1].open("w") as err:
                procs.append(subprocess.Popen([sys.executable, "-m", "imgpipe", str(cfg), str(ms)], cwd=tmp_path / run,
                                              env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL))
            deadline = time.monotonic() + 120
            while run == "a" and time.monotonic() < deadline and not read_trace(trace):
                assert procs[0].poll() is None, logs[0].read_text()[-3000:]
                time.sleep(0.1)  # b starts once a's WSClean runs
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and WAIT not in logs[1].read_text():
            assert procs[1].poll() is None, logs[1].read_text()[-3000:]
            time.sleep(0.2)
        trace.with_suffix(".go").touch()
        for proc, log in zip(procs, logs, strict=True):
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
        names = [limit["name"] for limit in api(server_env, "POST", "/v2/concurrency_limits/filter", {})]
    rows = read_trace(trace)
    (a_start, a_end), (b_start, b_end) = sorted(
        (next(t for _, p, k, t in rows if p == pid and k == "start"), next(t for _, p, k, t in rows if p == pid and k == "end"))
        for pid in {p for _, p, _, _ in rows})
    assert a_end <= b_start, "two runs sharing a Prefect server imaged one MS at once"
    assert WAIT in logs[1].read_text()
    assert [n for n in names if n.startswith("imgpipe-ms-")] == [] and "imgpipe-node-" + os.uname().nodename in names
