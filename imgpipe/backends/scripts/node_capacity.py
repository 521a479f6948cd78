"""A node's cores and memory as its jobs can use them: CPU affinity, cgroup limits, RAM.

Run on this machine by imgpipe (``imgpipe.facts.node_capacity``) and shipped ahead of
the node agent to SSH nodes, so both read a node the same way: standard library only,
Python 3.5 syntax (a node's python3 can be old). A cgroup limit (a container, a SLURM
job, a systemd slice) is what a job there really gets, so it wins over the machine's size.
"""

import os

UNLIMITED = 1 << 60
"""Limits at or above this (cgroup v1's "no limit" is ~2^63) are none."""


def _cgroup_dirs():
    """(folder, file names) of this process's cgroups and their parents, deepest first:
    cgroup v2 (``memory.max``, ``cpu.max``) and v1 (``memory.limit_in_bytes``,
    ``cpu.cfs_quota_us``); the limits that apply are the smallest of them."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _, ctrls, rel = (line.split(":", 2) + ["", ""])[:3]
        if ctrls == "":
            base = "/sys/fs/cgroup"
        elif "memory" in ctrls.split(","):
            base = "/sys/fs/cgroup/memory"
        elif "cpu" in ctrls.split(","):
            base = "/sys/fs/cgroup/" + ctrls
        else:
            continue
        parts = [p for p in rel.split("/") if p]
        while True:
            out.append(os.path.join(base, *parts))
            if not parts:
                break
            parts.pop()
    return out


def _number(path):
    try:
        with open(path) as f:
            words = f.read().split()
    except OSError:
        return None
    return int(words[0]) if words and words[0].lstrip("-").isdigit() else None


def capacity():
    """``(cores, memory kB, what limits them)``; memory 0 when it cannot be read."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    mem_kb, why = 0, []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
                    break
    except OSError:
        pass
    for d in _cgroup_dirs():
        limit = _number(os.path.join(d, "memory.max"))
        if limit is None:
            limit = _number(os.path.join(d, "memory.limit_in_bytes"))
        if limit is not None and 0 < limit < UNLIMITED and (mem_kb == 0 or limit // 1024 < mem_kb):
            mem_kb = limit // 1024
            if "cgroup memory" not in why:
                why.append("cgroup memory")
        quota = period = None
        try:
            with open(os.path.join(d, "cpu.max")) as f:
                words = f.read().split()
            if len(words) == 2 and words[0].isdigit():
                quota, period = int(words[0]), int(words[1])
        except OSError:
            quota, period = _number(os.path.join(d, "cpu.cfs_quota_us")), _number(os.path.join(d, "cpu.cfs_period_us"))
        if quota is not None and period and quota > 0:
            allowed = max(1, -(-quota // period))
            if allowed < cores:
                cores = allowed
                if "cgroup cpu" not in why:
                    why.append("cgroup cpu")
    return cores, mem_kb, ",".join(why) or "machine"


if __name__ == "__main__":
    print("%d %d %s" % capacity())
