"""Which time chunks and LST bins of a spectral window are on disk (the data handler asks)."""

from __future__ import annotations

import glob


def find_chunks(folder: str, sw: str, lst_layout: bool) -> list[str]:
    """``<SW>_T###.MS`` in ``folder``, and ``<SW>_LST###.MS`` for a level of LST bins (sorted)."""
    base = glob.escape(folder) + "/" + glob.escape(sw)
    found = glob.glob(base + "_T[0-9][0-9][0-9].MS")
    if lst_layout:
        found += glob.glob(base + "_LST[0-9][0-9][0-9].MS")
    return sorted(found)
