"""Jobs on SSH nodes, against real sshd servers on 127.0.0.2-4 (see sshd_nodes.py).

The nodes share this machine's filesystem; a tree ``<tmp>/net/nodeNNN/...`` stands for
each node's ``/net/nodeNNN`` and run_on_file_host_pattern is pointed at it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support.fake_wsclean import peak_overlap, read_trace
from support.jobs import make_job
from support.markers import requires_wsclean
from support.prefect_logs import logs_of_last_flow_run
from support.processes import alive
from support.sky import SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]


def node_config(test_nodes, tmp_path, body: str = "", **worker) -> Path:
    """A config for the test nodes; ``worker`` adds [worker] keys (TOML literals)."""
    lines = {
        "nodes": "'node[101-102]'",
        "ssh_config": f"'{test_nodes.ssh_config}'",
        "retry_delay_seconds": "0.2",
        "host_cooldown_s": "0.5",
        **worker,
    }
    text = "[worker]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
    text += body or f"[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp_path}/out'\nsize = [32, 32]\nscale = '1amin'\n"
    path = tmp_path / "imgpipe.toml"
    path.write_text(text)
    return path


def make_ms_dirs(root: Path, count: int, node: str | None = None) -> list[str]:
    """Empty folders named like MSs (for the fake wsclean); under net/<node>/ when given."""
    paths = []
    for i in range(count):
        path = root / ("net/" + node if node else "data") / f"{node or 'obs'}_{i:02d}.MS"
        path.mkdir(parents=True)
        paths.append(str(path))
    return paths


def summary_rows(stdout: str) -> list[tuple[str, str]]:
    """(status, rest of line) for each job's line, printed as it ended (not the summary's
    list of the jobs that did not end well, which repeats some)."""
    stdout = re.split(r"^  \d+ job\(s\) did not end well:$|^  total: ", stdout, maxsplit=1, flags=re.M)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^  (OK|FAILED|CANCELLED)\s+(.*)$", stdout, re.M)]


def sessions(test_nodes) -> dict[str, int]:
    """SSH sessions each node has started so far (its sshd log says so at LogLevel VERBOSE)."""
    return {n.name: n.log.read_text().count("Starting session: command") for n in test_nodes.nodes}


@pytest.mark.parametrize("node_agent", [True, False])
def test_pool_jobs_fill_every_slot_and_never_exceed_the_cap(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path, node_agent):
    """14 one-second jobs on 2 nodes × 2 slots: each node runs exactly 2 at a time; through the
    node agent, one SSH session per node carries them all (else one session reads the node's
    size, then one session per job)."""
    fake, trace = fake_wsclean
    cfg = node_config(healthy_nodes, tmp_path, max_concurrent="2", wsclean=f"'{fake}'", node_agent=str(node_agent).lower())
    ms = make_ms_dirs(tmp_path, 14)
    logins = {n.name: n.log.read_text().count("Accepted publickey") for n in healthy_nodes.nodes}
    before = sessions(healthy_nodes)
    res = run_imgpipe(cfg, *ms)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_trace(trace)
    assert sum(kind == "end" for *_, kind, _ in rows) == 14
    assert {n for n, *_ in rows} == {"node101", "node102"}
    assert peak_overlap(rows, "node101") == 2 and peak_overlap(rows, "node102") == 2
    assert len(summary_rows(res.stdout)) == 14 and all(s == "OK" for s, _ in summary_rows(res.stdout))
    # one SSH connection per node carried all its jobs
    for name in ("node101", "node102"):
        assert healthy_nodes[name].log.read_text().count("Accepted publickey") - logins[name] == 1
        jobs_there = sum(n == name and kind == "start" for n, _, kind, _ in rows)
        assert sessions(healthy_nodes)[name] - before[name] == (1 if node_agent else 1 + jobs_there)
        assert healthy_nodes.jobs_on(healthy_nodes[name]) == []  # the agent went with the run
    # every job's output reached its log beside its images
    log = (tmp_path / "out" / "obs_00.MS.log").read_text()
    assert log.startswith("fake wsclean on node10") and "obs_00.MS" in log


def test_two_runs_at_once_share_the_per_node_cap(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path, prefect_home):
    """Two imgpipe runs started together on the same nodes: still at most 2 jobs per node in
    all, and every slot is back in Prefect at the end (no lease left behind)."""
    import sqlite3

    fake, trace = fake_wsclean
    procs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        cfg = node_config(healthy_nodes, folder, max_concurrent="2", wsclean=f"'{fake}'")
        ms = make_ms_dirs(folder, 8)
        procs.append(run_imgpipe.popen(cfg, *ms))
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    rows = read_trace(trace)
    assert sum(kind == "end" for *_, kind, _ in rows) == 16
    assert peak_overlap(rows, "node101") == 2 and peak_overlap(rows, "node102") == 2
    with sqlite3.connect(prefect_home / "prefect.db") as db:
        slots = dict(db.execute("SELECT name, active_slots FROM concurrency_limit_v2 WHERE name LIKE 'imgpipe-node-node10%'"))
    assert {"imgpipe-node-node101", "imgpipe-node-node102"} <= set(slots) and set(slots.values()) == {0}
    assert [p.name for p in (prefect_home / "concurrency_leases").glob("*.json") if p.name != "expirations.json"] == []


def test_jobs_run_on_the_node_that_holds_their_ms(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    pinned = make_ms_dirs(tmp_path, 2, "node102") + make_ms_dirs(tmp_path / "x", 2, "node101")
    unpinned = make_ms_dirs(tmp_path, 2)  # no /net/nodeNNN/ in the path: any node of the pool
    cfg = node_config(
        healthy_nodes, tmp_path, nodes="'node101,node102'", run_on_file_host="true",
        run_on_file_host_pattern=f"'{tmp_path}/(?:x/)?net/(node\\d{{3}})/'", wsclean=f"'{fake}'",
        max_concurrent="1",
    )
    body = "[wsclean]\nname = 'img'\nout-dir = '$ms_in$/../out/$ms_basename$'\n"
    cfg.write_text(cfg.read_text().split("[wsclean]")[0] + body)
    res = run_imgpipe(cfg, *pinned, *unpinned, "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stderr[-3000:]
    ran_on = {}
    for ms in pinned + unpinned:
        log = Path(ms).parent / "out" / Path(ms).name / "img.log"
        ran_on[ms] = re.match(r"fake wsclean on (\w+):", log.read_text()).group(1)
    assert [ran_on[m] for m in pinned] == ["node102", "node102", "node101", "node101"]
    assert {ran_on[m] for m in unpinned} <= {"node101", "node102"}
    import json

    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [j["host"] for j in plan["jobs"]] == ["node102", "node102", "node101", "node101", None, None]


def test_real_wsclean_images_over_ssh(healthy_nodes, run_imgpipe, sim_dir, tmp_path):
    """Real WSClean through SSH on the node holding each MS; the source is where it was simulated."""
    from imgpipe.products.fits_peak import pixel_distance

    mss = []
    for node, name in (("node101", "SW01.MS"), ("node102", "SW02.MS")):
        dest = tmp_path / "net" / node / "data" / name
        shutil.copytree(sim_dir / name, dest)
        mss.append(str(dest))
    on_node = tmp_path / "on-node"  # a wsclean prefix, as a container wrapper would be
    on_node.write_text(f'#!/bin/bash\necho "${{IMGPIPE_NODE:-here}} $*" >> {tmp_path}/where\nexec "$@"\n')
    on_node.chmod(0o755)
    env_file = tmp_path / "env.sh"
    env_file.write_text("export OMP_NUM_THREADS=1\n")
    body = (
        "[wsclean]\nname = 'img'\nout-dir = '$ms_in$/../images/$ms_basename$'\nsize = [128, 128]\nscale = '2amin'\n"
        "niter = 200\nauto-threshold = 3\nweight = 'natural'\nj = 1\n"
    )
    cfg = node_config(
        healthy_nodes, tmp_path, body, run_on_file_host="true", run_on_file_host_pattern=f"'{tmp_path}/net/(node\\d{{3}})/'",
        wsclean=f"'{on_node} wsclean'", env_file=f"'{env_file}'",
    )
    res = run_imgpipe(cfg, *mss)
    assert res.returncode == 0, res.stderr[-3000:]
    # (the line from imgpipe reading WSClean's option list here, "here wsclean", is not a job)
    where = [line for line in (tmp_path / "where").read_text().splitlines() if line.split()[1:] != ["wsclean"]]
    assert sorted(line.split()[0] for line in where) == ["node101", "node102"]
    for ms, node in zip(mss, ("node101", "node102"), strict=True):
        assert any(line.startswith(f"{node} wsclean") and line.endswith(ms) for line in where)
        image = Path(ms).parent / "images" / Path(ms).name / "img-image.fits"
        assert pixel_distance(str(image), SOURCE_RA, SOURCE_DEC) <= 1.0  # the brightest pixel is the source
        assert "Writing restored image... DONE" in (image.parent / "img.log").read_text()  # WSClean output reached its log
    # ... and, line by line, the Prefect task logs
    messages = logs_of_last_flow_run(run_imgpipe.base_env())
    assert sum(m == "Writing restored image... DONE" for m in messages) == 2


def test_hostile_paths_and_values_never_reach_a_shell(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    evil = "we ird 'q\" ; touch pwned; $(touch pwned2) `touch pwned3`"
    ms = tmp_path / f"{evil}.MS"
    ms.mkdir()
    body = f"[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out/$ms_basename$'\ntemp-dir = \"{tmp_path}/x; touch pwned4\"\n"
    cfg = node_config(healthy_nodes, tmp_path, body, nodes="'node101'", wsclean=f"'{fake}'")
    res = run_imgpipe(cfg, ms, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    log = (tmp_path / "out" / f"{evil}.MS" / "img.log").read_text()
    # arrived as single arguments (then the job's share of its node: -j, -abs-mem); the temp-dir
    # holds the job's own scratch folder (collisions.md)
    said = [line for line in log.splitlines() if line.startswith("fake wsclean on ")]
    assert len(said) == 1 and said[0].endswith(f" {ms}"), log
    assert re.search(re.escape(f" -temp-dir {tmp_path}/x; touch pwned4/imgpipe-img-") + r"[0-9a-f]{8} -pol ", said[0]), log
    home = Path(os.path.expanduser("~"))
    for where in (tmp_path, home, Path("/")):
        assert not any((where / f"pwned{s}").exists() for s in ("", "2", "3", "4"))


def test_an_unreachable_node_is_skipped_when_asked(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """node103's sshd is down: named at start; pool jobs go to node101, its pinned job fails clearly."""
    fake, trace = fake_wsclean
    healthy_nodes.kill(healthy_nodes["node103"])
    pinned = make_ms_dirs(tmp_path, 1, "node103")
    pool = make_ms_dirs(tmp_path, 3)
    cfg = node_config(
        healthy_nodes, tmp_path, nodes="'node101,node103'", skip_unreachable_nodes="true", retries="1",
        run_on_file_host="true", run_on_file_host_pattern=f"'{tmp_path}/net/(node\\d{{3}})/'", wsclean=f"'{fake}'",
    )
    trace.with_suffix(".seconds").write_text("0.1")
    res = run_imgpipe(cfg, *pinned, *pool)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "retry 1 of 1" in res.stderr and "skipping unreachable node node103: connection refused" in res.stderr
    rows = summary_rows(res.stdout)
    assert [s for s, _ in rows] == ["FAILED", "OK", "OK", "OK"]
    assert "node unreachable: node103: connection refused" in rows[0][1]
    assert {n for n, *_ in read_trace(trace)} == {"node101"}
    # without skip_unreachable_nodes: one clear line, nothing runs
    cfg2 = node_config(healthy_nodes, tmp_path, nodes="'node101,node103'", retries="0", wsclean=f"'{fake}'")
    res = run_imgpipe(cfg2, *pool)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "cannot reach 1 node(s): node103" in res.stderr


def test_a_node_lost_mid_run_never_reports_its_jobs_ok(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """node102's sshd and sessions are killed while two jobs run there: those fail with the reason and
    WSClean is stopped on the node (no orphan); every other job ends ok on node101 or failed with why;
    each job is reported exactly once, and none as ok on node102 after the kill."""
    fake, trace = fake_wsclean
    cfg = node_config(healthy_nodes, tmp_path, max_concurrent="2", wsclean=f"'{fake}'", retries="2")
    ms = make_ms_dirs(tmp_path, 8)
    trace.with_suffix(".seconds").write_text("6")
    proc = run_imgpipe.popen(cfg, *ms)

    def running_on_node102():
        rows = read_trace(trace)
        ended = {pid for _, pid, kind, _ in rows if kind == "end"}
        return [pid for n, pid, kind, _ in rows if n == "node102" and kind == "start" and pid not in ended]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(running_on_node102()) < 2:
        time.sleep(0.05)
    victims = running_on_node102()
    assert len(victims) == 2
    healthy_nodes.kill(healthy_nodes["node102"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    rows = summary_rows(out)
    assert sorted(re.match(r"(\S+)", rest).group(1) for _, rest in rows) == [Path(m).name for m in ms]
    # the two victims: lost while running (or while starting: the wrapper's "started" may not have arrived)
    lost = [rest for s, rest in rows if re.search(r"connection lost while (WSClean was running|starting WSClean)", rest)]
    assert len(lost) == 2 and all(s == "FAILED" for s, rest in rows if rest in lost)
    others = [(s, rest) for s, rest in rows if rest not in lost]
    assert all((s == "OK" and " @ node101 " in rest) or (s == "FAILED" and "connection refused" in rest) for s, rest in others)
    ended = [(n, pid) for n, pid, kind, _ in read_trace(trace) if kind == "end"]
    assert all(n == "node101" for n, _ in ended) and len(ended) == sum(s == "OK" for s, _ in rows)
    assert all(not alive(pid) for pid in victims)  # the node stopped them
    assert "not retried: WSClean had started there" in err
    assert "no new job there for" in err  # the dead node was cooled down


def test_ctrl_c_stops_remote_jobs(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    cfg = node_config(healthy_nodes, tmp_path, max_concurrent="2", wsclean=f"'{fake}'")
    ms = make_ms_dirs(tmp_path, 6)
    trace.with_suffix(".seconds").write_text("120")
    proc = run_imgpipe.popen(cfg, *ms)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_trace(trace)) < 4:
        time.sleep(0.1)
    pids = [pid for _, pid, _, _ in read_trace(trace)]
    assert len(pids) == 4
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # to imgpipe alone, as a supervisor's kill -INT (not the terminal's group)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    # every WSClean gone, summary printed, imgpipe exited (issue 45: 10 saw 12.5 s; 0.3-0.7 s here)
    assert time.monotonic() - t0 < 3
    assert all(not alive(pid) for pid in pids)
    for node in healthy_nodes.nodes:
        assert healthy_nodes.jobs_on(node) == []  # nothing left under any sshd
    assert len(read_trace(trace)) == 4  # no job started after the interrupt


def test_host_keys_unknown_refused_accepted_when_asked_changed_always_refused(healthy_nodes, tmp_path, caplog):
    from imgpipe.backends import RunBackends
    from imgpipe.core.config import WorkerConfig
    from imgpipe.core.errors import NodeError

    known = tmp_path / "known_hosts"
    config = tmp_path / "ssh_config"
    config.write_text(healthy_nodes.ssh_config.read_text().replace(str(healthy_nodes.known_hosts), str(known)))
    node = healthy_nodes["node101"]

    def reach(accept: bool):
        worker = WorkerConfig(nodes=("node101",), ssh_config=str(config), accept_new_host_keys=accept, retries=0)
        with RunBackends(worker) as backends:  # a run of its own each time: fresh connections
            return backends.reach_nodes(["node101"])

    def sha256(pub: Path) -> str:  # as ssh-keygen -lf shows it
        return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]

    served = sha256(node.folder / "host_key.pub")
    name = f"[{node.address}]:{node.port}"
    with pytest.raises(NodeError) as err:
        reach(False)
    assert str(err.value).startswith(
        f"cannot reach 1 node(s): node101: the host key of {name} is unknown (ED25519 {served}, in none of {known}): "
        f"check it and accept it once with ssh -F {config} node101, or set [worker] accept_new_host_keys = true"
    ), err.value
    assert not known.exists()
    with caplog.at_level("WARNING"):
        assert reach(True) == {}
    assert f"node101: accepted the new host key of {name} (ED25519 {served}) and remembered it in {known}" in caplog.text
    assert known.read_text().startswith(f"[{node.address}]:{node.port} ssh-ed25519 ")
    assert reach(False) == {}  # now known
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known.write_text(f"[{node.address}]:{node.port} " + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n")
    with pytest.raises(NodeError) as err:
        reach(True)
    assert (f"node101: the host key of {name} has CHANGED: known_hosts ({known}) has ED25519 {sha256(Path(f'{other}.pub'))}, "
            f"the node offers ED25519 {served}; refusing to connect. If the node was reinstalled, remove the old key with "
            f"ssh-keygen -R '{name}' -f {known}, then check and accept the new one with ssh -F {config} node101") in str(err.value)



def ssh_backend(healthy_nodes, **worker_options):
    """An SSH backend of its own (fresh connections and agents) on the test nodes."""
    from imgpipe.backends.ssh import SSHBackend
    from imgpipe.core.config import WorkerConfig

    return SSHBackend(WorkerConfig(ssh_config=str(healthy_nodes.ssh_config), **worker_options))

@pytest.mark.parametrize("node_agent", [True, False])
def test_exit_status_and_setup_errors_over_ssh(healthy_nodes, tmp_path, node_agent):
    """The remote wrapper reports WSClean's exit, a signal, and an env_file the node cannot read;
    peak memory and CPU are the job's, measured on the node (by the agent's wait4, or by the
    wrapper's python3 launcher in a session of its own)."""
    from imgpipe.backends import ssh

    backend = ssh_backend(healthy_nodes, node_agent=node_agent)

    def run(argv, env_file=None):
        lines = []
        job = make_job("node103", argv, out_dir=tmp_path / "out", name="j")
        return ssh.run_ssh(job, env_file, lines.append, pool=backend.pool), lines

    result, lines = run(["bash", "-c", "echo $IMGPIPE_NODE; exit 3"])
    assert (result.status, result.exit_code, result.reason, lines) == ("failed", 3, "exit code 3: node103", ["node103"])
    assert result.pid is not None and result.cpu_s is not None
    result, _ = run(["bash", "-c", "kill -SEGV $$"])
    assert result.reason == "killed by SIGSEGV" and result.exit_code == -11
    result, lines = run(["true"], env_file=str(tmp_path / "no such env.sh"))
    assert result.status == "failed" and result.exit_code == 126 and result.pid is None
    assert result.reason.startswith("cannot source the env_file: ") and "no such env.sh: No such file or directory" in result.reason
    result, lines = run(["python3", "-c", "print('x' * 100000)"])
    assert result.ok and lines == ["x" * 100000]
    # cost measured on the node: peak memory and CPU of the job itself
    code = "b = bytearray(150 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); sum(range(3_000_000))"
    result, _ = run(["python3", "-c", code])
    assert result.ok and 150 < result.max_rss_mb < 250 and result.cpu_s > 0.05
    # max_time is enforced on the node
    lines = []
    job = make_job("node103", ("bash", "-c", "trap '' TERM; echo $$; sleep 60"), out_dir=tmp_path / "out", name="t")
    t0 = time.monotonic()
    result = ssh.run_ssh(job, None, lines.append, grace_s=1, max_time_s=1, pool=backend.pool)
    assert result.status == "timed-out" and "killed by SIGKILL" in result.reason and time.monotonic() - t0 < 6
    assert not alive(int(lines[0]))
    backend.close()


def test_ssh_config_file_wins_over_the_user_one(tmp_path, monkeypatch):
    """[worker] ssh_config is read first (first value wins, as in OpenSSH); ~/.ssh/config fills the rest."""
    from imgpipe.backends.ssh import SSHPool, SSHSettings

    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host node*\n  User astro\n  Port 2222\n  HostName %h.cluster\n")
    (tmp_path / "extra").write_text("Host node101\n  Port 2200\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    opts = SSHPool(SSHSettings(str(tmp_path / "extra"))).options("node101")
    assert (opts["hostname"], opts["port"], opts["user"]) == ("node101.cluster", "2200", "astro")
    other = SSHPool().options("node102")
    assert (other["hostname"], other["port"]) == ("node102.cluster", "2222")


def test_a_node_that_cannot_run_the_agent_gets_a_session_per_job(healthy_nodes, tmp_path, monkeypatch, caplog):
    """No python3 on the node for the agent: one warning, and jobs still run (a session each)."""
    from imgpipe.backends import ssh

    monkeypatch.setattr(ssh, "AGENT_PYTHON", "no-such-python3")
    backend = ssh_backend(healthy_nodes)
    before = sessions(healthy_nodes)["node102"]
    results = []
    for i in range(3):
        job = make_job("node102", ("bash", "-c", "echo $IMGPIPE_NODE"), out_dir=tmp_path / "out", name=f"j{i}")
        lines = []
        results.append((backend.run(job, lines.append), lines))
    assert all(r.ok and lines == ["node102"] for r, lines in results)
    warnings = [r.getMessage() for r in caplog.records if "no node agent" in r.getMessage()]
    assert len(warnings) == 1 and "no-such-python3" in warnings[0] and "one SSH session per job" in warnings[0]
    # the agent's attempt, one to read the node's size, then one per job
    assert sessions(healthy_nodes)["node102"] - before == 1 + 1 + 3
    backend.close()


def test_a_cancel_drops_an_agent_that_stopped_answering(healthy_nodes, tmp_path):
    """The agent on node101 is frozen (SIGSTOP) while its job runs: a cancel still ends the
    job's wait within the grace (the agent's session is dropped), and once the node runs
    again the lost session stops the job there."""
    from support.sshd_nodes import descendants

    backend = ssh_backend(healthy_nodes)
    node = healthy_nodes["node101"]
    backend.pool.agent("node101")
    (agent_pid,) = [p for p in descendants(node.proc.pid) if b"-I\0-S\0-c\0" in open(f"/proc/{p}/cmdline", "rb").read()]
    lines, out = [], {}
    job = make_job("node101", ("bash", "-c", "echo $$; exec sleep 120"), out_dir=tmp_path / "out", name="frozen")
    thread = threading.Thread(target=lambda: out.setdefault("r", backend.run(job, lines.append)))
    thread.start()
    deadline = time.monotonic() + 30
    while not lines and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(lines[0])
    os.kill(agent_pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        backend.cancel(grace_s=0.5)
        thread.join(15)
        assert not thread.is_alive() and time.monotonic() - t0 < 10
        assert out["r"].status == "cancelled" and alive(pid)  # the frozen node has not acted yet
    finally:
        os.kill(agent_pid, signal.SIGCONT)
    deadline = time.monotonic() + 15  # (the job first, then its wrapper and the agent leave the node)
    while (alive(pid) or healthy_nodes.jobs_on(node)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid) and healthy_nodes.jobs_on(node) == []
    backend.close()


def test_check_reaches_every_node_finds_wsclean_and_writes_nothing(healthy_nodes, run_imgpipe, tmp_path):
    """--check: one line per node, exit 0 when all are ready; a node refusing connections is
    named within seconds and the exit status is 1; no job runs, nothing is written."""
    mss = make_ms_dirs(tmp_path, 3)
    cfg = node_config(healthy_nodes, tmp_path, nodes="'node[101-103]'")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    res = run_imgpipe(cfg, *mss, "--check")
    all_up_s = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines() == [f"ok     node10{i}: reached over SSH, wsclean found" for i in (1, 2, 3)] + [
        "3 of 3 node(s) ready for 3 job(s)"
    ]
    healthy_nodes.kill(healthy_nodes["node103"])
    t0 = time.monotonic()
    res = run_imgpipe(cfg, *mss, "--check")
    # a refusal is answered at once: no wait for the connect timeout (10 s) on top of the
    # run's own start-up, measured just above on the same (maybe slow, loaded) machine
    assert res.returncode == 1 and time.monotonic() - t0 < all_up_s + 4, res.stdout + res.stderr
    assert re.search(r"^FAILED node103: connection refused at 127\.0\.0\.4:\d+ \(is sshd running there\?\)$", res.stdout, re.M), res.stdout
    assert res.stdout.splitlines()[-1] == "2 of 3 node(s) ready for 3 job(s)"
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("node_agent", [True, False])
def test_an_ssh_node_s_size_comes_from_its_agent_and_its_jobs_get_their_share(healthy_nodes, tmp_path, node_agent):
    """The node agent says its node's cores and memory when it starts (without an agent,
    one SSH session reads them); a job without a category gets its share of them (-j,
    -abs-mem, thread variables, read back on the node)."""
    from dataclasses import replace

    from imgpipe.core.job_resources import Ask, abs_mem_gb, give
    from imgpipe.core.resources import Category
    from imgpipe.facts.node_capacity import local_capacity

    backend = ssh_backend(healthy_nodes, node_agent=node_agent)
    try:
        argv = ("bash", "-c", 'echo "T=$OMP_NUM_THREADS/$MKL_NUM_THREADS A=$*"', "x")
        job = replace(make_job("node102", argv, out_dir=tmp_path / "out", name="j"), ask=Ask(None, ("j", "abs-mem"), None, 2))
        lines = []
        result = backend.run(job, lines.append)
        assert result.ok, result.reason
        assert backend.known_capacity("node102") == local_capacity()  # the "node" is this machine
        given = give(job.ask, local_capacity(), "node102")
        assert result.job.given == given and given.why.startswith("1/2 of node102 (")
        assert lines == [f"T={given.cores}/{given.cores} A=-j {given.cores} -abs-mem {abs_mem_gb(given.mem_mb)}"]
        small = replace(job, ask=Ask(Category("small", 1, 2048), ("j", "abs-mem"), None, 2))
        lines = []
        assert backend.run(small, lines.append).ok and lines == ["T=1/1 A=-j 1 -abs-mem 2"]
    finally:
        backend.close()


def test_jobs_are_admitted_on_ssh_nodes_by_the_memory_their_category_asks(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """The node agents say each node's size; a category asking 60 % of a node's usable
    memory runs one job at a time per node, though max_concurrent allows two. A category
    bigger than every node is refused in one line before anything runs."""
    from imgpipe.core.job_resources import usable_mb
    from imgpipe.facts.node_capacity import local_capacity

    fake, trace = fake_wsclean
    usable = usable_mb(local_capacity())  # the "nodes" are this machine
    body = (f"[worker.resources]\nheavy = {{cpus = 1, mem = '{int(usable * 0.6)}MB'}}\n"
            f"[wsclean]\nname = '$ms_basename$'\nout-dir = '{tmp_path}/out'\nsize = [32, 32]\nscale = '1amin'\n")
    cfg = node_config(healthy_nodes, tmp_path, body, max_concurrent="2", wsclean=f"'{fake}'")
    ms = make_ms_dirs(tmp_path, 6)
    res = run_imgpipe(cfg, *ms)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_trace(trace)
    assert sum(kind == "end" for *_, kind, _ in rows) == 6
    assert peak_overlap(rows, "node101") == 1 and peak_overlap(rows, "node102") == 1
    size = local_capacity().describe()  # the run's log says each node's size
    assert re.search(rf"node node101: {re.escape(size)}$", res.stderr, re.M), res.stderr[-3000:]
    assert re.search(rf"node node102: {re.escape(size)}$", res.stderr, re.M)
    trace.unlink()
    cfg.write_text(cfg.read_text().replace(f"mem = '{int(usable * 0.6)}MB'", f"mem = '{usable * 2}MB'"))
    res = run_imgpipe(cfg, *ms, "--force")
    assert res.returncode == 2 and not trace.exists(), res.stdout + res.stderr
    assert re.search(r"^imgpipe: error: obs_00\.MS @ any node: category heavy asks for 1 core\(s\) and [\d.]+ GiB, more than "
                     r"any node it may run on has \(node101 \d+ core\(s\), [\d.]+ GiB usable, node102 .*\): lower the category",
                     res.stderr, re.M), res.stderr


def test_a_node_down_at_start_stops_nothing_when_its_jobs_are_done(healthy_nodes, run_imgpipe, sim_dir, tmp_path):
    """The job pinned to node103 was done by an earlier run (real WSClean); node103's sshd is
    then down: a re-run checks what is done before what must be reachable, and ends ok (was:
    refused, exit 2)."""
    mss = []
    for node, name in (("node103", "SW01.MS"), ("node101", "SW02.MS")):
        dest = tmp_path / "net" / node / name
        shutil.copytree(sim_dir / name, dest)
        mss.append(str(dest))
    body = "[wsclean]\nname = 'img'\nout-dir = '$ms_in$/../images'\nsize = [64, 64]\nscale = '2amin'\nj = 1\n"
    cfg = node_config(healthy_nodes, tmp_path, body, nodes="'node101,node103'", retries="0", run_on_file_host="true",
                      run_on_file_host_pattern=f"'{tmp_path}/net/(node\\d{{3}})/'")
    first = run_imgpipe(cfg, mss[0])
    assert first.returncode == 0, first.stderr[-3000:]
    healthy_nodes.kill(healthy_nodes["node103"])
    again = run_imgpipe(cfg, *mss)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert "node103" not in again.stderr.split("Beginning flow run")[0]  # not reached, not warned about
    assert "2 job(s): 2 ok (1 skipped: done before), 0 failed" in again.stdout, again.stdout


def test_a_node_that_dies_mid_run_costs_at_most_node_give_up(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """node102's sshd is killed while 6 jobs pinned to it wait: they are tried until
    node_give_up (here 4 s) after its first failure, then fail at once with the reason; the
    run ends soon after node101's jobs (was: cool-downs doubled per failed job, up to 5 min
    each), and each line states the real wait."""
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("1")
    on102 = make_ms_dirs(tmp_path, 7, "node102")
    on101 = make_ms_dirs(tmp_path / "x", 4, "node101")
    cfg = node_config(
        healthy_nodes, tmp_path, nodes="'node101,node102'", max_concurrent="1", retries="2", run_on_file_host="true",
        run_on_file_host_pattern=f"'{tmp_path}/(?:x/)?net/(node\\d{{3}})/'", wsclean=f"'{fake}'",
        host_cooldown_s="1", node_give_up="'4s'", node_agent="false",
    )
    proc = run_imgpipe.popen(cfg, *on102, *on101)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(n == "node102" and k == "end" for n, _, k, _ in read_trace(trace)):
        time.sleep(0.05)
    healthy_nodes.kill(healthy_nodes["node102"])
    killed = time.monotonic()
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - killed
    assert proc.returncode == 1, err[-3000:]
    assert took < 4 + 1 + 10, took  # give-up, the job running at the kill, a last try and the run's end
    rows = summary_rows(out)
    assert sum(s == "OK" and "@ node101" in rest for s, rest in rows) == 4
    failed = [rest for s, rest in rows if s == "FAILED"]
    assert failed and any("node node102 given up: unreachable for" in rest for rest in failed), out
    assert re.search(r"node102: no new job there for [\d.]+ s \(connection failed; given up if it still fails 4 s", err)
    assert "node node102 given up" in err


def test_a_night_s_ms_missing_on_its_node_is_skipped_and_the_others_imaged(healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """A data handler night on two SSH nodes whose SW02 MS on node102 has not arrived: that job
    is read where its MS is (on node102), skipped as no data yet, WSClean not run; the other
    jobs run and the run ends 0 (was: the job went to WSClean and failed)."""
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("0.1")
    root = tmp_path / "net"
    for node, sw in (("node101", "SW01"), ("node102", "SW02")):
        if (node, sw) != ("node102", "SW02"):
            (root / node / "20231201_A" / f"{sw}.MS").mkdir(parents=True)
    (root / "node101" / "20231201_A" / "SW02.MS").mkdir(parents=True)  # (not the night's: another node)
    dh = tmp_path / "dh.toml"
    dh.write_text(f"[data_level_path]\nL2 = '{root}/%NODE%/%OBS_ID%'\n[spectral_windows]\nSW01 = [1, 4]\nSW02 = [5, 8]\n"
                  "[obs_ids]\n'20231201_A' = ['node101', 'node102']\n")
    body = (f"[data_handler]\nconfig_file = '{dh}'\n[wsclean]\nname = '$sw$'\nout-dir = '{tmp_path}/out/$obs_id$'\n"
            "channels-out = 2\n")
    cfg = node_config(healthy_nodes, tmp_path, body, run_on_file_host="true",
                      run_on_file_host_pattern=f"'{root}/(node\\d{{3}})/'", wsclean=f"'{fake}'")
    res = run_imgpipe(cfg, "20231201_A")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "2 job(s): 1 ok, 0 failed, 1 no data yet, in" in res.stdout, res.stdout
    assert f"no data yet: Measurement Set not found on its node: {root}/node102/20231201_A/SW02.MS (node102)" in res.stdout
    assert [ms.rsplit("/", 1)[1] for n, _, kind, _, ms in (line.split()[:5] for line in trace.read_text().splitlines())
            if kind == "start"] == ["SW01.MS"]



def test_a_night_s_ms_without_its_column_on_its_node_is_no_data_yet(healthy_nodes, run_imgpipe, fake_wsclean, sim_dir,
                                                                   tmp_path):
    """Issue 45: 13, on the node: node102's SW02 MS has no CORRECTED_DATA (calibration has not
    written it yet). Its node reads that from the MS's table description just before WSClean
    would start: skipped as no data yet, WSClean not run, the other job imaged, exit 0."""
    from casacore import tables

    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("0.1")
    root = tmp_path / "net"
    (root / "node101" / "20231201_A" / "SW01.MS").mkdir(parents=True)
    shutil.copytree(sim_dir / "SW02.MS", root / "node102" / "20231201_A" / "SW02.MS")
    with tables.table(str(root / "node102" / "20231201_A" / "SW02.MS"), readonly=False, ack=False) as t:
        t.removecols(["CORRECTED_DATA"])
    dh = tmp_path / "dh.toml"
    dh.write_text(f"[data_level_path]\nL2 = '{root}/%NODE%/%OBS_ID%'\n[spectral_windows]\nSW01 = [1, 4]\nSW02 = [5, 8]\n"
                  "[obs_ids]\n'20231201_A' = ['node101', 'node102']\n")
    body = f"[data_handler]\nconfig_file = '{dh}'\n[wsclean]\nname = '$sw$'\nout-dir = '{tmp_path}/out/$obs_id$'\n"
    cfg = node_config(healthy_nodes, tmp_path, body, run_on_file_host="true",
                      run_on_file_host_pattern=f"'{root}/(node\\d{{3}})/'", wsclean=f"'{fake}'")
    res = run_imgpipe(cfg, "20231201_A")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "2 job(s): 1 ok, 0 failed, 1 no data yet, in" in res.stdout, res.stdout
    assert (f"no data yet: Measurement Set without the column WSClean reads: {root}/node102/20231201_A/SW02.MS has no "
            "CORRECTED_DATA column on its node; set [wsclean] data-column to a column it has (node102)") in res.stdout
    assert [ms.rsplit("/", 1)[1] for n, _, kind, _, ms in (line.split()[:5] for line in trace.read_text().splitlines())
            if kind == "start"] == ["SW01.MS"]
