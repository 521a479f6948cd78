"""The files named ``<prefix><start>…<end>``: one WSClean job's images and leftovers.

Why not ``glob``: glob compiles each pattern into a regular expression and keeps it in
fnmatch's cache (up to 32 768 of them, ~0.85 KiB each); every job's names are new, so a
night of thousands of jobs would fill that cache for nothing. A directory listing
compared by string keeps nothing.
"""

from __future__ import annotations

import os


def named(prefix: str, start: str = "", end: str = "") -> list[str]:
    """Paths (sorted) in ``prefix``'s folder whose names begin with its last part + ``start``
    and end with ``end``, as ``glob(escape(prefix) + start + "*" + end)`` finds them."""
    folder, base = os.path.split(prefix)
    head = base + start
    try:
        with os.scandir(folder or ".") as entries:
            names = [e.name for e in entries
                     if e.name.startswith(head) and e.name.endswith(end) and len(e.name) >= len(head) + len(end)]
    except OSError:  # no such folder (yet), or unreadable: nothing there for us
        return []
    return sorted(os.path.join(folder, name) for name in names)
