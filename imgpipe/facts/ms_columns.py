"""Which columns a Measurement Set's main table has, read without casacore.

casacore writes each column's name into the table's ``table.dat`` as its AipsIO strings
are written: a 4-byte big-endian length, then the name. Looking for that is one small
file read per MS, so planning thousands of MSs stays fast, and the same test runs on
nodes that have no casacore (the job wrapper does it there with ``grep -P``).
"""

from __future__ import annotations

import os
import struct

AIPSIO_MAGIC = b"\xbe\xbe\xbe\xbe"
"""How every file casacore writes with AipsIO begins (``table.dat`` among them)."""


def columns_among(ms_path: str, names: tuple[str, ...]) -> frozenset[str] | None:
    """Those of ``names`` that the MS's main table declares; None: its ``table.dat``
    cannot be read or is not casacore's (no MS there, or not one: said elsewhere)."""
    try:
        with open(os.path.join(ms_path, "table.dat"), "rb") as f:
            desc = f.read()
    except OSError:
        return None
    if not desc.startswith(AIPSIO_MAGIC):
        return None
    return frozenset(n for n in names if struct.pack(">I", len(n.encode())) + n.encode() in desc)
