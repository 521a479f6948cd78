"""The simulated sky of the tests: phase centre, one bright source, and a small image config."""

from __future__ import annotations

from pathlib import Path

RA0, DEC0 = 150.0, 50.0
SOURCE_RA, SOURCE_DEC = 151.0, 50.3

BANDS = {
    "SW01.MS": [60e6, 61e6, 62e6, 63e6],
    "SW02.MS": [64e6, 65e6, 66e6, 67e6],
    "SW03.MS": [68e6, 69e6, 70e6],
}
"""The simulated MSs: SW01, SW02 (4 channels each, different bands) and SW03 (3 channels)."""

# A small real image of the simulated sky, one job per MS (a few seconds per job).
SMALL_IMAGE = """
[wsclean]
name = 'img'
out-dir = 'images/$ms_basename$'
size = '128 128'
scale = '1amin'
niter = 200
mgain = 0.8
j = 1
"""


def simulate(folder: Path) -> Path:
    """Write the simulated MSs of :data:`BANDS` into ``folder``."""
    from imgpipe.demo.simulate import PointSource, make_ms

    for i, (name, freqs) in enumerate(BANDS.items()):
        make_ms(str(folder / name), [PointSource(SOURCE_RA, SOURCE_DEC, 10.0)], RA0, DEC0, freqs, n_ant=8, n_time=32, seed=3 + i)
    return folder
