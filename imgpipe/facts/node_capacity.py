"""This machine's cores and memory as a job here can use them (affinity, cgroup limits).

The reading itself is ``backends/scripts/node_capacity.py``, the same file the node
agent carries to SSH nodes, so a local node and a remote one are measured alike.
"""

from __future__ import annotations

from pathlib import Path

from imgpipe.core.job_resources import Capacity

SCRIPT = Path(__file__).parent.parent / "backends" / "scripts" / "node_capacity.py"


def local_capacity() -> Capacity:
    """Cores and memory of this machine (or of the cgroup imgpipe runs in)."""
    space: dict = {"__name__": "imgpipe_node_capacity"}
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), space)
    cores, mem_kb, limited_by = space["capacity"]()
    return Capacity(cores, mem_kb // 1024, limited_by)


def capacity_from_words(words: list[str]) -> Capacity | None:
    """``<cores> <memory kB> <limited by>`` as the agent says them after ``ready``; None if it said nothing."""
    try:
        cores, mem_kb = int(words[0]), int(words[1])
    except (IndexError, ValueError):
        return None
    return Capacity(cores, mem_kb // 1024, " ".join(words[2:]) or "machine")
