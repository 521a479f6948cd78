"""Where is the brightest pixel of a FITS image, in pixels and on the sky?

Used by the demo and the tests to check the science: a simulated source must come
out where it was put.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    x: int
    y: int
    value: float
    ra_deg: float
    dec_deg: float


def _read(fits_path: str):
    # numpy and astropy (~0.5 s): only to read an image, never for --help or a dry run
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with fits.open(fits_path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # WSClean's DATE-OBS without MJD-OBS
        return np.squeeze(hdul[0].data), WCS(hdul[0].header).celestial


def _peak(data, wcs) -> Peak:
    # numpy and astropy (~0.5 s): only to read an image, never for --help or a dry run
    import numpy as np

    y, x = np.unravel_index(np.nanargmax(data), data.shape)
    ra, dec = wcs.pixel_to_world_values(x, y)
    return Peak(int(x), int(y), float(data[y, x]), float(ra), float(dec))


def brightest_pixel(fits_path: str) -> Peak:
    return _peak(*_read(fits_path))


def pixel_distance(fits_path: str, ra_deg: float, dec_deg: float) -> float:
    """Distance in pixels between the brightest pixel and a sky position."""
    data, wcs = _read(fits_path)  # one read for both the peak and the position
    peak = _peak(data, wcs)
    x, y = wcs.world_to_pixel_values(ra_deg, dec_deg)
    return math.hypot(float(x) - peak.x, float(y) - peak.y)
