"""How big each Measurement Set is: the bytes of its main table, for the job order.

WSClean's time grows with the visibilities it reads, so a job's size is the bytes of
its MSs' main tables: the files directly in each MS directory (subtables are
directories and are left out). One ``scandir`` per MS, in a few threads so that it
stays quick over NFS. An MS that cannot be read from here (e.g. a path only its node
sees) counts as 0.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from imgpipe.core.memory_estimate import estimate_mib


def ms_bytes(path: str) -> int:
    """Bytes of the MS's main table (0 if it cannot be read here)."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0
    return total


def ms_sizes(paths: Iterable[str], threads: int = 16) -> dict[str, int]:
    """``{path: bytes}`` for every distinct path, read ``threads`` at a time."""
    paths = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        return dict(zip(paths, pool.map(ms_bytes, paths), strict=True))


def memory_estimate_of(job) -> float | None:
    """The job's expected WSClean peak (MiB, ``core.memory_estimate``) with its MSs' sizes
    read here; None when it has no estimate (a category, no image size)."""
    ask = job.ask
    if ask is None or ask.image_mib is None:
        return None
    return estimate_mib(ask.image_mib, sum(ms_bytes(path) for path in job.ms))
