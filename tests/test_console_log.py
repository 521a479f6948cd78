"""What a command-line run prints: quiet on a terminal, Prefect's lines with -v (or into a
file), each job's line as it ends, and the summary once."""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys

import pytest

from imgpipe.cli.console_log import ConsoleLines
from imgpipe.core import events

from support.markers import requires_wsclean
from support.sky import SMALL_IMAGE


def record(msg: str, level: int = logging.INFO, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("prefect.task_runs", level, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_quiet_keeps_warnings_and_errors_only():
    quiet = ConsoleLines(verbose=False)
    assert not quiet.filter(record("Beginning flow run"))
    assert quiet.filter(record("skipping unreachable node node103", logging.WARNING))
    assert not quiet.filter(record("Finished in state Failed('exit 1')", logging.ERROR))
    assert not quiet.filter(record("failed: exit 1", logging.ERROR, **events.SHOWN))


def test_verbose_keeps_everything_but_what_the_command_line_prints():
    verbose = ConsoleLines(verbose=True)
    assert verbose.filter(record("Beginning flow run")) and verbose.filter(record("Finished in state Completed()"))
    assert not verbose.filter(record("1 job(s): 1 ok, 0 failed, in 3.0 s", **events.SHOWN))


def run_on_a_terminal(cmd: list[str], env: dict, cwd, timeout: float = 300, interrupt_when: str | None = None) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal, as in a person's shell;
    ``interrupt_when``: send it SIGINT once its output holds this text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    out = b""
    while True:
        if interrupt_when is not None and interrupt_when.encode() in out:
            proc.send_signal(signal.SIGINT)
            interrupt_when = None
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {timeout} s: {out.decode(errors='replace')[-2000:]}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=30), re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode("utf-8", "replace"))  # colours off


@requires_wsclean
@pytest.mark.prefect
def test_a_terminal_shows_the_bar_each_job_and_the_summary_once_and_v_adds_prefect(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config("[worker]\nmax_concurrent = 2\n" + SMALL_IMAGE)
    env = run_imgpipe.base_env()
    env.pop("CI")
    env["COLUMNS"] = "250"
    cmd = [sys.executable, "-m", "imgpipe", str(cfg), str(a), str(b)]
    code, out = run_on_a_terminal(cmd, env, tmp_path)
    assert code == 0, out
    assert "Beginning flow run" not in out and "| INFO" not in out and "Finished in state" not in out, out
    assert "imaging" in out and "2/2" in out  # the bar
    for ms in (a, b):  # each job's line, once: printed as it ended, not again in the summary
        assert out.count(f"OK        {ms.name} @ localhost") == 1, out
    assert out.count("2 job(s): 2 ok, 0 failed") == 1 and out.count("report: ") == 1, out
    # a line that fits the terminal: the image's figures, no log for a job that ended ok (issue 45: 15)
    line = next(line for line in out.splitlines() if f"OK        {a.name} @ localhost" in line)
    assert " | peak " in line and "log:" not in line and len(line) <= 250, line

    code, out = run_on_a_terminal(cmd + ["--force", "-v"], env, tmp_path)
    assert code == 0, out
    assert "Beginning flow run" in out and "| INFO" in out, out
    assert out.count("2 job(s): 2 ok, 0 failed") == 1, out


@requires_wsclean
@pytest.mark.prefect
def test_into_a_file_prefect_lines_by_default_and_q_keeps_them_out(run_imgpipe, write_config, ms_copy):
    (a,) = ms_copy("SW01.MS")
    cfg = write_config(SMALL_IMAGE.replace("niter = 200", "niter = 0"))
    res = run_imgpipe(cfg, a)
    assert res.returncode == 0, res.stderr
    assert "Beginning flow run" in res.stderr
    everything = res.stdout + res.stderr
    assert everything.count("1 job(s): 1 ok, 0 failed") == 1 and everything.count("OK        SW01.MS @ localhost") == 1
    res = run_imgpipe(cfg, a, "--force", "-q")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("  OK        SW01.MS @ localhost") and " | image peak " in lines[0], lines
    assert lines[-3].startswith("1 job(s): 1 ok, 0 failed"), lines


@requires_wsclean
@pytest.mark.prefect
def test_into_a_file_a_failed_job_is_its_lines_not_prefect_s_repr_of_its_state(run_imgpipe, write_config, ms_copy, tmp_path):
    """Issue 45: 15. Prefect's 'Task run failed with state: Failed(message=..., result=JobResult(...))'
    (~2 kB a job) and its 'NoneType: None', and its workers' 'Still processing items' at the
    end, stay out of the run's output; the job's own lines and the summary say it."""
    (a,) = ms_copy("SW01.MS")
    failing = tmp_path / "failing-wsclean"
    failing.write_text('#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\necho "no luck"\nexit 3\n')
    failing.chmod(0o755)
    res = run_imgpipe(write_config(f"[worker]\nwsclean = '{failing}'\n" + SMALL_IMAGE), a)
    assert res.returncode == 1, res.stderr[-3000:]
    everything = res.stdout + res.stderr
    assert "FAILED    SW01.MS @ localhost" in res.stdout and "exit code 3: no luck" in res.stdout
    assert "Finished in state Failed('SW01.MS @ localhost: exit code 3: no luck')" in res.stderr  # (-v's lines stay)
    for noise in ("Task run failed with state", "result=JobResult(", "NoneType: None", "Still processing items"):
        assert noise not in everything, everything[-3000:]


@requires_wsclean
@pytest.mark.prefect
def test_on_a_terminal_ctrl_c_leaves_the_bar_once_then_the_stopped_run(run_imgpipe, write_config, ms_copy, tmp_path):
    """Issue 45: 15. After Ctrl-C the stopped run's lines come below the bar's last state,
    which is not drawn again between them (it was, three times)."""
    a, b = ms_copy("SW01.MS", "SW02.MS")
    sleeper = tmp_path / "sleeping-wsclean"
    sleeper.write_text('#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\necho "gridding"\nsleep 120\n')
    sleeper.chmod(0o755)
    cfg = write_config(f"[worker]\nwsclean = '{sleeper}'\nmax_concurrent = 2\n" + SMALL_IMAGE)
    env = run_imgpipe.base_env()
    env.pop("CI")
    env["COLUMNS"] = "150"
    cmd = [sys.executable, "-m", "imgpipe", str(cfg), str(a), str(b), "-v"]
    code, out = run_on_a_terminal(cmd, env, tmp_path, interrupt_when=" - start on localhost")
    assert code == 130, out
    after = out[out.index("did not end well"):]
    assert "━" not in after and "2 job(s): 0 ok, 0 failed, 2 cancelled" in after, after
    assert "interrupted: running WSClean jobs were stopped" in after
