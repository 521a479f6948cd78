"""Where is the brightest pixel of a FITS image, in pixels and on the sky?

Used by the demo and the tests to check the science: a simulated source must come
out where it was put.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    x: int
    y: int
    value: float
    ra_deg: float
    dec_deg: float


def _read(fits_path: str):
    # (image_stats: numpy and astropy only once an image is read, never for --help or a dry run)
    from imgpipe.products.image_stats import image_plane

    data, _, wcs = image_plane(fits_path)
    return data, wcs


def _peak(data, wcs) -> Peak:
    # (see _read)
    from imgpipe.products.image_stats import brightest

    y, x = brightest(data)
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
