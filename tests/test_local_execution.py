"""Local job execution: output streaming, exit codes, signals, env_file, cancellation.

These use small shell scripts in place of WSClean (fault injection only); imaging
itself is tested with the real WSClean in test_imaging.py.
"""

import os
import shlex
import threading
import time

import pytest

from imgpipe.backends import local
from imgpipe.backends.job_script import wrapped_argv
from imgpipe.backends.running import RunningJobs
from imgpipe.core.results import CANCELLED, FAILED, OK

from support.jobs import make_job


def job_for(tmp_path, argv, name="img"):
    (tmp_path / "x.MS").mkdir(exist_ok=True)  # (its MSs must be there: the wrapper reads where they are)
    return make_job("localhost", argv, (str(tmp_path / "x.MS"),), tmp_path / "out dir", name)


def test_output_is_streamed_to_log_and_callback(tmp_path):
    lines = []
    job = job_for(tmp_path, ["bash", "-c", "echo first; echo second >&2; echo third"])
    result = local.run_local(job, None, lines.append)
    assert result.status == OK and result.exit_code == 0
    assert lines == ["first", "second", "third"]
    assert open(job.log_path).read() == "first\nsecond\nthird\n"
    assert result.wall_s >= 0 and result.cpu_s >= 0 and result.max_rss_mb > 0


def test_non_zero_exit_is_a_failure(tmp_path):
    result = local.run_local(job_for(tmp_path, ["bash", "-c", "echo bad input; exit 3"]), None)
    assert result.status == FAILED and result.exit_code == 3 and result.reason == "exit code 3: bad input"


def test_killed_by_signal_is_named(tmp_path):
    result = local.run_local(job_for(tmp_path, ["bash", "-c", "kill -SEGV $$"]), None)
    assert result.status == FAILED and result.reason == "killed by SIGSEGV"


def test_bash_notice_of_a_signal_never_reaches_the_control_stream(tmp_path):
    """Bash prints "Segmentation fault ..." when it reaps a job killed by a signal outside
    `wait`; that notice raced the control lines and became the job's "last words" (seen in
    CI under load). Made certain here: the wrapper's stdout is a full pipe, so it is stuck
    writing "started" while the job dies and bash reaps it."""
    import fcntl
    import subprocess

    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, os.O_NONBLOCK)
    filled = 0
    try:
        while True:
            filled += os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, 0)
    argv = wrapped_argv(["bash", "-c", "kill -SEGV $$"], str(tmp_path / "o"), str(tmp_path / "o.log"), None, "t0k", 1)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=w)
    os.close(w)
    time.sleep(0.5)  # the job is dead by now; the wrapper is still blocked on its first write
    with os.fdopen(r, "rb") as pipe:
        out = pipe.read()[filled:].decode()
    proc.stdin.close()
    assert proc.wait() == 139
    assert out.splitlines()[0] == f"@imgpipe-t0k started {out.split()[2]}"
    control = [line for line in out.splitlines()[1:] if not line.startswith("@imgpipe-t0k space ")]  # (free space: a failed job)
    assert control[:1] == ["@imgpipe-t0k exit 139"] and "Segmentation" not in out


def test_missing_executable(tmp_path):
    result = local.run_local(job_for(tmp_path, ["no-such-wsclean-xyz"]), None)
    assert result.status == FAILED and result.exit_code == 127
    assert "no-such-wsclean-xyz" in open(job_for(tmp_path, []).log_path).read()


def test_env_file_is_sourced_and_tilde_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "env.sh").write_text("export IMGPIPE_TEST_VAR='from env file'\n")
    lines = []
    result = local.run_local(job_for(tmp_path, ["bash", "-c", 'echo "$IMGPIPE_TEST_VAR"']), "~/env.sh", lines.append)
    assert result.status == OK and lines == ["from env file"]


def test_unreadable_env_file_fails_with_the_shell_message(tmp_path):
    lines = []
    result = local.run_local(job_for(tmp_path, ["true"]), str(tmp_path / "missing env.sh"), lines.append)
    assert result.status == FAILED and result.exit_code == 126
    assert any("missing env.sh: No such file or directory" in line for line in lines)


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    job = make_job("localhost", ("true",), out_dir=blocker / "sub")
    result = local.run_local(job, None)
    assert result.status == FAILED and result.exit_code == 126
    assert result.reason.startswith("cannot create the output directory: mkdir: cannot create directory")
    assert result.pid is None and result.started_at is None  # WSClean never started


def test_hostile_values_are_never_run_by_a_shell(tmp_path):
    os.chdir(tmp_path)
    evil = "x'; touch pwned; echo '$(touch pwned2)`touch pwned3`"
    lines = []
    job = make_job("localhost", ("printf", "%s\\n", evil), out_dir=tmp_path / f"out {evil}")
    result = local.run_local(job, str(tmp_path / f"env {evil}"), lines.append)
    assert result.status == FAILED  # the env file does not exist, so nothing ran
    result = local.run_local(job, None, lines.append)
    assert result.status == OK and lines[-1] == evil
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))
    # the SSH form of the same command quotes every piece
    cmd = shlex.join(wrapped_argv(job.argv, job.out_dir, job.log_path, evil, "t0k", 5))
    assert shlex.split(cmd)[-3:] == ["printf", "%s\\n", evil]
    assert shlex.split(cmd)[6:10] == ["t0k", evil, job.out_dir, job.log_path]


def test_cancel_all_stops_the_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    job = job_for(tmp_path, ["bash", "-c", f"sleep 60 & echo $! > '{pid_file}'; wait"])
    out = {}
    running = RunningJobs()
    thread = threading.Thread(target=lambda: out.setdefault("r", local.run_local(job, None, running=running)))
    thread.start()
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    t0 = time.monotonic()
    assert local.cancel_all(running, grace_s=5) == 1
    thread.join(10)
    assert out["r"].status == CANCELLED and time.monotonic() - t0 < 5
    assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"
    assert out["r"].pid is not None and not os.path.exists(f"/proc/{out['r'].pid}")
    assert local.run_local(job, None, running=running).status == CANCELLED  # nothing of this run starts after a cancel
    assert local.run_local(job_for(tmp_path, ["true"]), None).ok  # another run's job does (nothing shared)


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    job = job_for(tmp_path, ["bash", "-c", "trap '' TERM; echo ready; sleep 60"])
    out = {}
    lines = []
    running = RunningJobs()
    thread = threading.Thread(target=lambda: out.setdefault("r", local.run_local(job, None, lines.append, running=running)))
    thread.start()
    while "ready" not in lines:
        time.sleep(0.02)
    t0 = time.monotonic()
    local.cancel_all(running, grace_s=1)
    thread.join(10)
    took = time.monotonic() - t0
    assert out["r"].status == CANCELLED and "SIGKILL" in out["r"].reason and 0.9 < took < 4


def test_the_job_dies_with_imgpipe(tmp_path):
    """A killed imgpipe closes the wrapper's stdin: the watcher stops the job (no orphan)."""
    import subprocess
    import sys

    pid_file = tmp_path / "pid"
    code = (
        "import sys; from imgpipe.backends import local; from imgpipe.core.plan import Job; "
        f"local.run_local(Job('localhost', ('bash', '-c', 'echo $$ > {pid_file}; sleep 60'), (), None, None, {str(tmp_path)!r}, 'j'), None)"
    )
    runner = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.05)
    job_pid = int(pid_file.read_text())
    runner.kill()
    runner.wait()
    for _ in range(100):
        if not os.path.exists(f"/proc/{job_pid}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{job_pid}")


def test_cpu_time_of_the_job_is_accounted(tmp_path):
    result = local.run_local(job_for(tmp_path, ["python3", "-c", "sum(range(20_000_000))"]), None)
    assert result.status == OK and result.cpu_s > 0.1 and result.max_rss_mb > 5


def test_max_time_stops_the_job_and_reports_it_timed_out(tmp_path):
    t0 = time.monotonic()
    result = local.run_local(job_for(tmp_path, ["bash", "-c", "echo working; sleep 30"]), None, grace_s=5, max_time_s=1)
    took = time.monotonic() - t0
    assert result.status == "timed-out" and not result.ok and 0.9 < took < 4
    assert result.reason.startswith("timed out: ran longer than max_time 1s; stopped with SIGTERM")
    assert "killed by SIGTERM" in result.reason


def test_max_time_kills_a_job_that_ignores_sigterm_after_the_grace(tmp_path):
    t0 = time.monotonic()
    result = local.run_local(job_for(tmp_path, ["bash", "-c", "trap '' TERM; sleep 30"]), None, grace_s=1, max_time_s=1)
    assert result.status == "timed-out" and "killed by SIGKILL" in result.reason
    assert 1.9 < time.monotonic() - t0 < 5


def test_a_job_that_ends_in_time_is_not_timed_out(tmp_path):
    result = local.run_local(job_for(tmp_path, ["bash", "-c", "sleep 0.2"]), None, max_time_s=5)
    assert result.ok


def test_peak_memory_and_cpu_of_the_job_itself_are_measured(tmp_path):
    """200 MiB held by the job: the peak reported is the job's, measured on its node."""
    code = "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); sum(range(3_000_000))"
    result = local.run_local(job_for(tmp_path, ["python3", "-c", code]), None)
    assert result.ok and 200 < result.max_rss_mb < 300 and result.cpu_s > 0.05


def test_a_small_job_started_by_a_big_imgpipe_reports_its_own_peak_not_imgpipes(tmp_path):
    """Linux gives a started process its parent's peak memory (at exec), so wait4 of the
    wrapper says at least imgpipe's own ~400 MiB (Prefect loaded): seen in the suite as a
    200 MiB job reported at 415 MiB. Here this process first holds 600 MiB; a 50 MiB job
    must still be reported near 50 MiB."""
    ballast = bytearray(600 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "b = bytearray(50 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    result = local.run_local(job_for(tmp_path, ["python3", "-c", code]), None)
    del ballast
    assert result.ok and 50 < result.max_rss_mb < 120


def test_the_job_runs_under_the_accounting_launcher_on_imgpipes_python(tmp_path):
    """The job's cost is measured by the python3 launcher between the wrapper and the job,
    here and behind a launcher command (``srun``): the interpreter imgpipe runs on
    (``python3`` on PATH may be a pyenv shim, 0.1 s a call), with -I -S."""
    import sys

    parent = ["bash", "-c", "tr '\\0' ' ' < /proc/$PPID/cmdline; echo"]
    for launcher in ((), ("env",)):
        lines = []
        result = local.run_local(job_for(tmp_path, parent), None, lines.append, launcher=launcher)
        assert result.ok and lines[0].startswith(f"{sys.executable} -I -S -c ") and result.max_rss_mb > 0


def test_a_job_killed_by_the_oom_killer_is_named_out_of_memory(tmp_path):
    """A real OOM kill: the job allocates past its cgroup's 200 MiB limit. The wrapper sees
    the kernel's OOM count rise, and the reason says so, with the peak and what was given."""
    from dataclasses import replace

    from imgpipe.core.job_resources import Given
    from imgpipe.core.results import name_out_of_memory

    from support.cgroups import memory_cgroup

    code = "b = bytearray(600 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    with memory_cgroup(200) as prefix:
        if prefix is None:
            pytest.skip("cannot make a memory cgroup here (no permission or no memory controller)")
        job = replace(job_for(tmp_path, [*prefix, "python3", "-c", code]), given=Given(1, 200, "test"))
        result = name_out_of_memory(local.run_local(job, None))
    assert result.status == "failed" and result.exit_code == -9 and result.oom_killed
    assert 150 < result.max_rss_mb < 230  # (RSS also counts pages the cgroup does not charge)
    assert result.reason.startswith(f"out of memory (peak {result.max_rss_mb:.0f} MiB of 200 MiB given): "
                                    "killed by the kernel's OOM killer; give it more memory")


def test_another_sigkill_is_not_called_out_of_memory(tmp_path):
    from dataclasses import replace

    from imgpipe.core.job_resources import Given
    from imgpipe.core.results import name_out_of_memory

    job = replace(job_for(tmp_path, ["bash", "-c", "kill -KILL $$"]), given=Given(1, 4096, "test"))
    result = name_out_of_memory(local.run_local(job, None))
    assert (result.reason, result.oom_killed) == ("killed by SIGKILL", False)


def test_an_error_wsclean_prints_before_exiting_0_fails_the_job(tmp_path):
    """WSClean 3.6 exits 0 after "Error occurred while finishing IO task: Error opening
    temporary data file" (its image is then of no MS): never ok."""
    said = "Error occurred while finishing IO task: Error opening temporary data file"
    result = local.run_local(job_for(tmp_path, ["bash", "-c", f"echo 'Inversion: 1 2 3'; echo '{said}'; echo done"]), None)
    assert result.status == FAILED and result.exit_code == 0
    assert result.reason == f"WSClean exited 0 after printing an error: {said}"
    # words that merely mention an error are not one
    fine = local.run_local(job_for(tmp_path, ["bash", "-c", "echo 'Estimated error of the model: 0.1'"], "b"), None)
    assert fine.status == OK


def test_a_job_whose_ms_is_not_on_its_node_does_not_run_wsclean(tmp_path):
    """The wrapper reads where the MS is (here: this machine): missing, WSClean is not run and
    the job says which MS (SSH, SLURM and Dask jobs run under the same wrapper)."""
    job = make_job("localhost", ("bash", "-c", f"touch {tmp_path}/ran"), (str(tmp_path / "gone.MS"),), tmp_path / "o")
    result = local.run_local(job, None)
    assert result.status == FAILED and result.pid is None and not (tmp_path / "ran").exists()
    assert result.reason == f"Measurement Set not found on its node: {tmp_path}/gone.MS"
