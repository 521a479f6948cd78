"""``[prefect] server = 'kept'``: the first run starts a Prefect server that stays up, later
runs use it, ``prefect server stop`` stops it, and a dead one's pid file is replaced."""

from __future__ import annotations

import datetime
import os
import signal
import stat
import subprocess
import urllib.error
from pathlib import Path

import pytest

from imgpipe.orchestration.kept_server import AUTH_FILE, server_port

from support.prefect_logs import logs_of_last_flow_run
from support.prefect_server import PREFECT, api, free_port
from support.processes import alive, wait_for

pytestmark = pytest.mark.prefect


def client(port: int, home: Path) -> dict:
    """How a client reaches the kept server of ``home``: its URL and the auth string imgpipe left there."""
    return {"PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_API_AUTH_STRING": (home / AUTH_FILE).read_text().strip()}


def flow_runs(server: dict) -> int:
    return api(server, "POST", "/flow_runs/count", {})


def events(server: dict, prefix: str) -> int:
    """Events named ``prefix``... the server holds (from any run of the last day)."""
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).isoformat()
    query = {"filter": {"event": {"prefix": [prefix]}, "occurred": {"since": since}}, "limit": 50}
    return api(server, "POST", "/events/filter", query)["total"]


def heartbeats(server: dict) -> int:
    """Flow-run heartbeat events the server holds, once it holds the Completed events of
    all ``flow_runs(server)`` runs: the server stores events in batches, seconds after they
    came, and a run's heartbeat (at its start) comes before its Completed event."""
    assert wait_for(lambda: events(server, "prefect.flow-run.Completed") == flow_runs(server), 60)
    return events(server, "prefect.flow-run.heartbeat")


def test_server_port_is_read_from_a_prefect_server_s_command_line_only():
    assert server_port(os.getpid()) is None  # this is pytest, not a Prefect server
    assert server_port(2 ** 22 + 12345) is None  # no such process


def test_kept_server_is_started_once_reused_replaced_when_dead_and_stopped_by_prefect(
        run_imgpipe, fake_wsclean, write_config, tmp_path):
    fake, _ = fake_wsclean
    fake.with_name("trace.seconds").write_text("0.2")
    port = free_port()
    home = tmp_path / "home"
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port)}
    ms = tmp_path / "SW01.MS"
    ms.mkdir()
    cfg = write_config(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'img'\nsize = '64 64'\nscale = '1amin'\n"
                       "[prefect]\nserver = 'kept'\n")
    pid_file = home / "server.pid"
    try:
        first = run_imgpipe(cfg, ms, env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        assert f"started a Prefect server kept for later runs: UI at http://127.0.0.1:{port}" in first.stderr
        pid = int(pid_file.read_text())
        assert alive(pid) and server_port(pid) == port  # still up after the run
        # it outlives the run on a port every account here reaches: it wants its auth string
        assert f"(its auth string is in {home / AUTH_FILE})" in first.stderr
        assert stat.S_IMODE((home / AUTH_FILE).stat().st_mode) == 0o600
        server = client(port, home)
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(server, "POST", "/flow_runs/count", {}, auth=False)
        assert refused.value.code in (401, 403)
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(server, "GET", "/flow_runs/00000000-0000-0000-0000-000000000000", auth=False)
        assert refused.value.code == 401

        second = run_imgpipe(cfg, ms, "--force", env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "started a Prefect server" not in second.stderr
        assert int(pid_file.read_text()) == pid and flow_runs(server) == 2  # one server, both runs in its history
        # the command leaves at once after its last line, yet the run's last log reached the
        # server; and each command-line run sent Prefect's flow-run heartbeat (at its start), so
        # that an automation on the server can tell a run whose machine died
        logs = logs_of_last_flow_run(run_imgpipe.base_env({**env, **server}))
        assert any(line.startswith("1 job(s): 1 ok, 0 failed") for line in logs), logs[-5:]
        assert heartbeats(server) == 2

        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: server_port(pid) is None, 10)
        third = run_imgpipe(cfg, ms, "--force", env=env)
        assert third.returncode == 0, third.stderr[-3000:]
        assert f"(replacing pid {pid}, gone)" in third.stderr
        new_pid = int(pid_file.read_text())
        server = client(port, home)  # (a new server: a new auth string)
        assert new_pid != pid and server_port(new_pid) == port and flow_runs(server) == 3  # same database

        stop = subprocess.run([PREFECT, "server", "stop"], env={**run_imgpipe.base_env(env)}, capture_output=True,
                              text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert wait_for(lambda: server_port(new_pid) is None, 30) and not pid_file.exists()
    finally:
        if pid_file.exists() and pid_file.read_text().strip().isdigit():
            pid = int(pid_file.read_text())
            if server_port(pid) is not None:
                os.kill(pid, signal.SIGKILL)


def test_a_port_taken_by_another_program_is_one_clear_error(run_imgpipe, fake_wsclean, write_config, tmp_path):
    import socket

    fake, _ = fake_wsclean
    ms = tmp_path / "SW01.MS"
    ms.mkdir()
    cfg = write_config(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'img'\n[prefect]\nserver = 'kept'\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run_imgpipe(cfg, ms, env={"PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_API_PORT": str(port)})
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"imgpipe: error: the kept Prefect server on port {port} did not start (exited)"), res.stderr
    assert "PREFECT_SERVER_API_PORT sets the port" in last and "Traceback" not in res.stderr
    assert not (tmp_path / "home" / "server.pid").exists()
    assert not list(Path(tmp_path).glob("images/*"))  # nothing ran
