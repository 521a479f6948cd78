"""A memory-limited cgroup of our own, for tests that need a real limit (capacity, OOM kills).

cgroup v1 (this machine: ``/sys/fs/cgroup/memory``) or v2; None where neither can be
made (no permission, no memory controller): tests skip then, saying why.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from pathlib import Path


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(folder of this process's memory cgroup, limit file name)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, rel = line.split(":", 2)
        if "memory" in ctrls.split(","):
            return Path("/sys/fs/cgroup/memory" + rel), "memory.limit_in_bytes"
    for line in lines:
        if line.startswith("0::"):
            folder = Path("/sys/fs/cgroup" + line[3:])
            if "memory" in (folder / "cgroup.subtree_control").read_text(errors="replace").split() if (
                    folder / "cgroup.subtree_control").exists() else False:
                return folder, "memory.max"
    return None


@contextmanager
def memory_cgroup(limit_mb: int):
    """A new cgroup limited to ``limit_mb``; yields the argv prefix that runs a command in it
    (``bash -c 'echo $$ > cgroup.procs; exec "$@"'``), or None if none could be made."""
    own = _own_memory_cgroup()
    folder = None
    if own is not None:
        parent, limit_file = own
        candidate = parent / f"imgpipe-test-{uuid.uuid4().hex[:8]}"
        try:
            candidate.mkdir()
            if limit_file == "memory.limit_in_bytes":  # v1: no swap to spill into either
                (candidate / limit_file).write_text(str(limit_mb * 1024 * 1024))
                swap = candidate / "memory.memsw.limit_in_bytes"
                if swap.exists():
                    swap.write_text(str(limit_mb * 1024 * 1024))
            else:
                (candidate / limit_file).write_text(str(limit_mb * 1024 * 1024))
                (candidate / "memory.swap.max").write_text("0")
            folder = candidate
        except OSError:
            try:
                candidate.rmdir()
            except OSError:
                pass
    try:
        yield None if folder is None else [
            "bash", "-c", f'echo $$ > {folder}/cgroup.procs && exec "$@"', "in-cgroup"]
    finally:
        if folder is not None:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except OSError:  # a process still in it: it is being killed
                    time.sleep(0.1)
