"""The node agent, run here as a local process over pipes (as it runs on a node over SSH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imgpipe.backends.agent_script import AGENT
from imgpipe.backends.job_script import OutputParser, new_token, wrapped_argv
from imgpipe.backends.node_agent import EXITED, LOST, NOT_STARTED, OUTPUT, AgentLost, NodeAgent

from support.processes import alive, wait_for


@pytest.fixture
def agent():
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
    )

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    node = NodeAgent(proc.stdout, write, proc.stdin.close, "test")
    assert node.wait_ready(10)
    yield node, proc
    node.shutdown(5)
    proc.kill()
    proc.wait()


def messages(queue, timeout_s: float = 30.0) -> list:
    """Everything the job said until it ended (or its agent was lost)."""
    out = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kind, value = queue.get(timeout=max(0.01, deadline - time.monotonic()))
        out.append((kind, value))
        if kind != OUTPUT:
            return out
    raise AssertionError(f"no end in {timeout_s} s: {out}")


def said(queue) -> list:
    """``messages``, with an exit as its status alone."""
    return [(kind, value.status if kind == EXITED else value) for kind, value in messages(queue)]


def test_jobs_run_at_once_and_each_gets_its_own_output_and_status(agent):
    node, _ = agent
    _, qa = node.start(["bash", "-c", "for i in 1 2 3; do echo a$i; sleep 0.2; done; exit 3"])
    _, qb = node.start(["python3", "-c", "print('x' * 100000); print('é ü')"])
    t0 = time.monotonic()
    assert said(qa) == [(OUTPUT, "a1"), (OUTPUT, "a2"), (OUTPUT, "a3"), (EXITED, 3)]
    assert said(qb) == [(OUTPUT, "x" * 100000), (OUTPUT, "é ü"), (EXITED, 0)]
    assert time.monotonic() - t0 < 3
    # the agent reaps each wrapper with wait4: the job's peak memory and CPU come with its exit
    hold = "b = bytearray(120 << 20); b[::4096] = b'x' * len(b[::4096]); sum(range(3_000_000)); print('held')"
    _, qd = node.start(["bash", "-c", f"{sys.executable} -c \"{hold}\"; echo after"])
    (_, held), (_, after), (kind, exited) = messages(qd)
    assert (held, after, kind, exited.status) == ("held", "after", EXITED, 0)
    assert 120 * 1024 < exited.max_rss_kb < 200 * 1024 and exited.user_s + exited.sys_s > 0.05
    _, qc = node.start(["/no/such/program"])
    (kind, why), = messages(qc)
    assert kind == NOT_STARTED and "No such file" in why


def test_the_wrapper_stops_its_job_on_stop_and_when_the_agent_goes(agent, tmp_path):
    """The agent holds each wrapper's stdin: ``stop``, the agent's input ending, or the agent
    dying all make the wrapper stop its job (SIGTERM to the job's group)."""
    node, proc = agent

    def start_sleeper(name: str):
        token = new_token()
        argv = wrapped_argv(["bash", "-c", "echo $$; exec sleep 60"], str(tmp_path / name), str(tmp_path / f"{name}.log"), None, token, 1)
        jid, queue = node.start(argv)
        parser = OutputParser(token)
        lines = []
        while not lines:
            kind, value = queue.get(timeout=10)
            assert kind == OUTPUT
            parser.take(value, lines.append)
        return jid, queue, int(lines[0]), parser

    jid, queue, pid, parser = start_sleeper("one")
    assert alive(pid) and parser.state.pid is not None
    node.tell(jid, "stop 1", close=True)
    rest = messages(queue, 10)
    for _kind, value in rest[:-1]:
        parser.take(value, lambda line: None)
    assert rest[-1][0] == EXITED and rest[-1][1].status == 143 and parser.state.exit_code == 143  # SIGTERM
    assert wait_for(lambda: not alive(pid))

    # the agent's input ends (imgpipe done, or its connection gone): running jobs are stopped
    _, queue, pid, _ = start_sleeper("two")
    node.shutdown(10)
    assert messages(queue, 10)[-1][0] == EXITED
    assert wait_for(lambda: not alive(pid)) and wait_for(lambda: proc.poll() is not None)
    with pytest.raises(AgentLost):
        node.start(["true"])


def test_a_killed_agent_is_lost_and_its_jobs_still_stop(agent, tmp_path):
    node, proc = agent
    token = new_token()
    argv = wrapped_argv(["bash", "-c", "echo $$; exec sleep 60"], str(tmp_path / "o"), str(tmp_path / "o.log"), None, token, 1)
    _, queue = node.start(argv)
    lines = []
    parser = OutputParser(token)
    while not lines:
        parser.take(queue.get(timeout=10)[1], lines.append)
    pid = int(lines[0])
    os.kill(proc.pid, signal.SIGKILL)
    assert messages(queue, 10)[-1][0] == LOST and node.lost
    assert wait_for(lambda: not alive(pid))  # the wrapper saw its stdin close


class _Stdin:
    closed = False

    def write(self, data):
        self.written = data

    def flush(self):
        pass

    def close(self):
        self.closed = True


class _Wrapper:
    """What the agent holds of a running wrapper: its stdin."""

    def __init__(self):
        self.stdin = _Stdin()


class _EndsWhenLookedAt(dict):
    """A job table whose job ends (its pump thread removes it) right after any membership
    test: the interleaving that made ``jid in jobs`` then ``jobs[jid]`` raise KeyError."""

    def __contains__(self, jid):
        found = dict.__contains__(self, jid)
        self.pop(jid, None)
        return found


@pytest.mark.parametrize("message", [b"close j1\n", b"in j1 stop 1\n"])
def test_a_job_ending_while_its_message_is_handled_does_not_end_the_agent(message):
    import io

    from imgpipe.backends.scripts.node_agent import Agent

    agent = Agent(io.BytesIO())
    wrapper = _Wrapper()
    agent.jobs = _EndsWhenLookedAt({b"j1": wrapper})
    agent.handle(message)  # before the fix: KeyError, and the agent (every job of the node) was gone
    agent.handle(b"close no-such-job\n")
    assert wrapper.stdin.closed == message.startswith(b"close")
