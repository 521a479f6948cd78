"""A node's cores and memory as its jobs can use them: here, in a cgroup, and as the node agent says them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgpipe.backends.agent_script import AGENT
from imgpipe.backends.node_agent import NodeAgent
from imgpipe.facts.node_capacity import SCRIPT, capacity_from_words, local_capacity

from support.cgroups import memory_cgroup


def meminfo_total_mb() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal")


def test_this_machine_as_affinity_and_meminfo_say_unless_a_cgroup_limits_it():
    cap = local_capacity()
    assert cap.cores == len(os.sched_getaffinity(0)) or "cgroup cpu" in cap.limited_by
    assert cap.mem_mb == meminfo_total_mb() or "cgroup memory" in cap.limited_by
    assert 0 < cap.mem_mb <= meminfo_total_mb()


def test_a_cgroup_memory_limit_is_what_a_job_there_gets():
    with memory_cgroup(300) as prefix:
        if prefix is None:
            pytest.skip("cannot make a memory cgroup here (no permission or no memory controller)")
        out = subprocess.run([*prefix, sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True).stdout
    cores, mem_kb, why = out.split(maxsplit=2)
    assert int(mem_kb) == 300 * 1024 and why.startswith("cgroup memory") and int(cores) >= 1


def test_the_cpu_affinity_counts_not_the_machine_s_cores():
    out = subprocess.run(["taskset", "-c", "0", sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "1"


def test_the_node_agent_says_its_node_s_capacity_when_it_starts():
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    node = NodeAgent(proc.stdout, write, proc.stdin.close, "test")
    try:
        assert node.wait_ready(10)
        assert node.capacity == local_capacity()
    finally:
        node.shutdown(5)
        proc.kill()
        proc.wait()


def test_an_agent_that_says_only_ready_has_no_capacity():
    assert capacity_from_words([]) is None and capacity_from_words(["x"]) is None
    assert capacity_from_words(["4", "2097152"]).mem_mb == 2048
    assert capacity_from_words("2 307200 cgroup memory,cgroup cpu".split()).limited_by == "cgroup memory,cgroup cpu"


def test_a_node_without_agent_is_read_by_its_python3_else_by_the_shell(tmp_path):
    """``node_capacity_fallback.sh`` (one SSH session, where no agent runs): with python3 it
    says what the agent would; without, the CPUs it may use and the RAM, and says so."""
    from imgpipe.backends.agent_script import CAPACITY_FALLBACK, CAPACITY_SCRIPT

    argv = ["/bin/bash", "-c", CAPACITY_FALLBACK, "imgpipe-capacity", CAPACITY_SCRIPT]
    with_python = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    assert capacity_from_words(with_python) == local_capacity()

    bare = tmp_path / "bin"  # a PATH without python3
    bare.mkdir()
    for name in ("nproc", "awk", "getconf"):
        os.symlink(subprocess.run(["/bin/bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout.strip(),
                   bare / name)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env={"PATH": str(bare)}).stdout
    cap = capacity_from_words(out.split())
    assert cap.cores == len(os.sched_getaffinity(0)) and cap.mem_mb == meminfo_total_mb()
    assert cap.limited_by == "machine,no python3: cgroup limits not read"
    assert cap.describe().endswith("GiB (no python3: cgroup limits not read)")
