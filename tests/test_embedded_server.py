"""The CLI's embedded Prefect server: started before Prefect is imported, skips work done before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from imgpipe.orchestration.embedded_server import EmbeddedServer, block_types_registered

from support.processes import alive, wait_for


def server_env(pid: int) -> dict[str, str]:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_block_types_are_registered_on_the_first_start_only(tmp_path, monkeypatch):
    """Registering (or re-hashing) Prefect's block types costs ~1 s per server start and
    imgpipe uses no blocks: the first server of a PREFECT_HOME registers them, later
    ones skip it."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.delenv("PREFECT_MEMO_STORE_PATH", raising=False)
    assert not block_types_registered()
    for first in (True, False):
        server = EmbeddedServer()
        server.start()
        try:
            server.wait_ready(120)
            env = server_env(server.process.pid)
            assert ("PREFECT_API_BLOCKS_REGISTER_ON_START" not in env) == first
            import httpx

            kinds = httpx.post(f"{server.api_url}/block_types/filter", json={}).json()
            assert any(kind["slug"] == "secret" for kind in kinds)  # registered by the first start, still there
        finally:
            server.stop()
        assert block_types_registered()


def test_a_memo_without_the_registration_does_not_count(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_MEMO_STORE_PATH", raising=False)
    (tmp_path / "memo_store.toml").write_text("something_else = 'x'\n")
    assert not block_types_registered()
    memo = tmp_path / "elsewhere.toml"
    memo.write_text("block_auto_registration = 'abc'\n")
    monkeypatch.setenv("PREFECT_MEMO_STORE_PATH", str(memo))
    assert block_types_registered()


def test_stop_without_waiting_leaves_the_server_to_finish_its_own_shutdown(tmp_path, monkeypatch):
    """The command line does not wait for the server's graceful stop (it overlaps the
    exit); the server is told to stop all the same and is gone soon after."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = EmbeddedServer()
    server.start()
    try:
        server.wait_ready(120)
        pid = server.process.pid
        server.stop(wait=False)
        assert server.process.returncode is None  # told, not waited for
        assert wait_for(lambda: server.process.poll() is not None, timeout_s=10)
        # uvicorn re-raises the SIGTERM it caught once its shutdown is done: -15, not SIGKILL's -9
        assert server.process.returncode == -signal.SIGTERM
        assert not alive(pid)
    finally:
        server.stop()  # (reaps it, or stops a server this test failed on)


def test_a_python_program_that_exits_normally_waits_for_its_server(tmp_path):
    """Library use: stop(wait=False) then a normal interpreter exit; the server is gone
    (reaped by the program) by the time the program has exited."""
    program = (
        "from imgpipe.orchestration.embedded_server import EmbeddedServer\n"
        "server = EmbeddedServer()\nserver.start()\nserver.wait_ready(120)\n"
        "print(server.process.pid, flush=True)\nserver.stop(wait=False)\n"
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    assert not alive(pid)
