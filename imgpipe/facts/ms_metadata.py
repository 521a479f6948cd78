"""What imgpipe reads from a Measurement Set: its channel frequencies.

casacore is imported only here and only when needed (``channels-out = 'all'``), so
planning without it stays fast. Results are cached per MS path for the process.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from imgpipe.core.errors import InputError


@functools.lru_cache(maxsize=None)
def channel_frequencies(ms_path: str) -> tuple[float, ...]:
    """All channel frequencies (Hz) of all spectral windows of an MS, sorted."""
    if not os.path.isdir(ms_path):
        raise InputError(f"Measurement Set not found: {ms_path}")
    if not os.path.exists(os.path.join(ms_path, "table.dat")):
        raise InputError(f"not a Measurement Set (no table.dat): {ms_path}")
    from casacore import tables  # heavy: keep off the --help path

    spw_path = os.path.join(ms_path, "SPECTRAL_WINDOW")
    try:
        with tables.table(spw_path, ack=False, readonly=True) as spw:
            freqs = [np.asarray(spw.getcell("CHAN_FREQ", row), dtype=float).ravel() for row in range(spw.nrows())]
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise InputError(f"not a readable Measurement Set ({first}): {ms_path}") from None
    if not freqs:
        raise InputError(f"Measurement Set has no spectral window: {ms_path}")
    return tuple(sorted(float(f) for f in np.concatenate(freqs)))


def count_distinct_channels(ms_paths: list[str] | tuple[str, ...]) -> int:
    """Number of distinct channel frequencies over several MSs (1 mHz tolerance)."""
    freqs = {round(f, 3) for path in ms_paths for f in channel_frequencies(path)}
    return len(freqs)
