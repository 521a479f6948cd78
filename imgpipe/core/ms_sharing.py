"""Jobs that read the same Measurement Set: they must never run at the same moment.

Why: WSClean writes into and beside the MSs it reads (MODEL_DATA after deconvolution,
reorder files named after the MS unless ``-temp-dir``), so two WSCleans on one MS
overwrite each other's. A pattern that selects a composite spectral window and its
members with ``--combine`` makes such jobs within one run; two configs imaging the
same night make them across runs. Within a run the scheduler holds the later job
back (and fills the slot with another); across runs a lock per MS held in Prefect
does (``orchestration/node_limits.py``).
"""

from __future__ import annotations

import os
from collections import defaultdict


def ms_keys(job) -> tuple[str, ...]:
    """The MSs ``job`` reads, each once, as normalised paths (the keys of its locks)."""
    return tuple(dict.fromkeys(os.path.normpath(p) for p in job.ms))


def shared_ms(jobs) -> dict[str, list]:
    """MS → the jobs that read it, for every MS read by more than one job (plan order)."""
    readers: dict[str, list] = defaultdict(list)
    for job in jobs:
        for key in ms_keys(job):
            readers[key].append(job)
    return {key: found for key, found in readers.items() if len(found) > 1}


def sharing_notes(jobs) -> list[str]:
    """One line per shared MS, for the dry run: which jobs wait for each other."""
    notes = []
    for key, readers in shared_ms(jobs).items():
        names = ", ".join(job.label for job in readers[:4]) + (f", … (+{len(readers) - 4})" if len(readers) > 4 else "")
        notes.append(f"{os.path.basename(key)} is read by {len(readers)} jobs ({names}): they run one at a time")
    return notes
