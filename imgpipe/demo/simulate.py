"""Simulate small Measurement Sets with point sources at known positions.

Used by ``make demo`` and by the tests that check the science: an image made by
imgpipe must show each source where it was put. The visibilities follow the
convention WSClean images correctly (checked on this machine)::

    V = S · exp(+2πi (u·l + v·m + w·(n−1)) / λ)

with (u, v, w) the row's UVW column in metres and l growing with right ascension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

C = 299_792_458.0
SITE_LAT = math.radians(47.376)  # Nançay (NenuFAR), for realistic geometry only
SITE_LON = math.radians(2.193)
EARTH_RADIUS = 6_378_137.0
MJD_2023_12_01 = 60279.0


@dataclass(frozen=True)
class PointSource:
    ra_deg: float
    dec_deg: float
    flux_jy: float = 10.0


def lm(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float, float]:
    """Direction cosines (l, m, n) of (ra, dec) relative to the phase centre (radians)."""
    dra = ra - ra0
    l = math.cos(dec) * math.sin(dra)
    m = math.sin(dec) * math.cos(dec0) - math.cos(dec) * math.sin(dec0) * math.cos(dra)
    n = math.sin(dec) * math.sin(dec0) + math.cos(dec) * math.cos(dec0) * math.cos(dra)
    return l, m, n


def _antennas(n_ant: int, radius_m: float, seed: int) -> np.ndarray:
    """Antenna positions (east, north, up) in metres: random in a disc, reproducible."""
    rng = np.random.default_rng(seed)
    r = radius_m * np.sqrt(rng.uniform(0.02, 1.0, n_ant))
    phi = rng.uniform(0, 2 * np.pi, n_ant)
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.zeros(n_ant)], axis=1)


def _enu_to_itrf(enu: np.ndarray) -> np.ndarray:
    sl, cl, sp, cp = math.sin(SITE_LON), math.cos(SITE_LON), math.sin(SITE_LAT), math.cos(SITE_LAT)
    site = EARTH_RADIUS * np.array([cp * cl, cp * sl, sp])
    e = np.array([-sl, cl, 0.0])
    n = np.array([-sp * cl, -sp * sl, cp])
    u = np.array([cp * cl, cp * sl, sp])
    return site + enu[:, :1] * e + enu[:, 1:2] * n + enu[:, 2:3] * u


def _enu_to_equatorial(enu: np.ndarray) -> np.ndarray:
    """Local (E, N, U) → equatorial (X toward H=0, Y toward H=-6h, Z toward the pole)."""
    sp, cp = math.sin(SITE_LAT), math.cos(SITE_LAT)
    e, n, u = enu[:, 0], enu[:, 1], enu[:, 2]
    return np.stack([-sp * n + cp * u, e, cp * n + sp * u], axis=1)


def make_ms(
    path: str,
    sources: list[PointSource],
    ra0_deg: float = 150.0,
    dec0_deg: float = 50.0,
    freqs_hz: list[float] | None = None,
    n_ant: int = 10,
    n_time: int = 48,
    hour_angle_span_h: float = 8.0,
    radius_m: float = 1500.0,
    noise_jy: float = 0.0,
    seed: int = 1,
) -> str:
    """Write a Measurement Set at ``path`` and return it."""
    # python-casacore (~0.3 s): only when an MS is written
    from casacore import tables

    freqs = np.asarray(freqs_hz if freqs_hz is not None else [60e6, 61e6, 62e6, 63e6], dtype=float)
    n_chan, n_corr = len(freqs), 4
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    enu = _antennas(n_ant, radius_m, seed)
    xyz = _enu_to_equatorial(enu)
    a1, a2 = np.triu_indices(n_ant, k=1)
    n_bl = len(a1)
    hours = np.linspace(-hour_angle_span_h / 2, hour_angle_span_h / 2, n_time)
    h = np.repeat(np.radians(hours * 15.0), n_bl)
    bx, by, bz = (np.tile(xyz[a2] - xyz[a1], (n_time, 1))).T
    sd, cd = math.sin(dec0), math.cos(dec0)
    u = np.sin(h) * bx + np.cos(h) * by
    v = -sd * np.cos(h) * bx + sd * np.sin(h) * by + cd * bz
    w = cd * np.cos(h) * bx - cd * np.sin(h) * by + sd * bz
    uvw = np.stack([u, v, w], axis=1)

    vis = np.zeros((len(u), n_chan), dtype=complex)
    for src in sources:
        l, m, n = lm(math.radians(src.ra_deg), math.radians(src.dec_deg), ra0, dec0)
        phase = 2j * np.pi * (u * l + v * m + w * (n - 1))[:, None] * (freqs / C)[None, :]
        vis += src.flux_jy * np.exp(phase)
    if noise_jy:
        rng = np.random.default_rng(seed + 1)
        vis += noise_jy * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    data = np.zeros((len(u), n_chan, n_corr), dtype=np.complex64)
    data[:, :, 0] = vis
    data[:, :, 3] = vis

    # DATA and CORRECTED_DATA alike: a calibrated MS, as imgpipe images (nenucal's default
    # [wsclean] data-column is CORRECTED_DATA)
    columns = [tables.makearrcoldesc(name, 0j, valuetype="complex", shape=[n_chan, n_corr])
               for name in ("DATA", "CORRECTED_DATA")]
    ms = tables.default_ms(path, tables.maketabdesc(columns))
    n_row = len(u)
    t0 = MJD_2023_12_01 * 86400.0
    interval = hour_angle_span_h * 3600.0 / max(n_time - 1, 1)
    times = np.repeat(t0 + np.arange(n_time) * interval, n_bl)
    ms.addrows(n_row)
    ms.putcol("UVW", uvw)
    ms.putcol("ANTENNA1", np.tile(a1, n_time).astype(np.int32))
    ms.putcol("ANTENNA2", np.tile(a2, n_time).astype(np.int32))
    ms.putcol("TIME", times)
    ms.putcol("TIME_CENTROID", times)
    ms.putcol("INTERVAL", np.full(n_row, interval))
    ms.putcol("EXPOSURE", np.full(n_row, interval))
    ms.putcol("DATA", data)
    ms.putcol("CORRECTED_DATA", data)
    ms.putcol("FLAG", np.zeros((n_row, n_chan, n_corr), dtype=bool))
    ms.putcol("WEIGHT", np.ones((n_row, n_corr), dtype=np.float32))
    ms.putcol("SIGMA", np.ones((n_row, n_corr), dtype=np.float32))
    ms.putcol("SCAN_NUMBER", np.ones(n_row, dtype=np.int32))
    ms.close()

    with tables.table(f"{path}/ANTENNA", readonly=False, ack=False) as ant:
        ant.addrows(n_ant)
        ant.putcol("NAME", [f"SIM{i:02d}" for i in range(n_ant)])
        ant.putcol("STATION", [f"SIM{i:02d}" for i in range(n_ant)])
        ant.putcol("TYPE", ["GROUND-BASED"] * n_ant)
        ant.putcol("MOUNT", ["ALT-AZ"] * n_ant)
        ant.putcol("POSITION", _enu_to_itrf(enu))
        ant.putcol("OFFSET", np.zeros((n_ant, 3)))
        ant.putcol("DISH_DIAMETER", np.full(n_ant, 25.0))
    width = float(np.median(np.diff(freqs))) if n_chan > 1 else 1e6
    with tables.table(f"{path}/SPECTRAL_WINDOW", readonly=False, ack=False) as spw:
        spw.addrows(1)
        spw.putcell("NUM_CHAN", 0, n_chan)
        spw.putcell("CHAN_FREQ", 0, freqs)
        spw.putcell("CHAN_WIDTH", 0, np.full(n_chan, width))
        spw.putcell("EFFECTIVE_BW", 0, np.full(n_chan, width))
        spw.putcell("RESOLUTION", 0, np.full(n_chan, width))
        spw.putcell("REF_FREQUENCY", 0, float(freqs[0]))
        spw.putcell("TOTAL_BANDWIDTH", 0, width * n_chan)
        spw.putcell("MEAS_FREQ_REF", 0, 5)  # TOPO
        spw.putcell("NET_SIDEBAND", 0, 1)
        spw.putcell("NAME", 0, "SIM")
    with tables.table(f"{path}/POLARIZATION", readonly=False, ack=False) as pol:
        pol.addrows(1)
        pol.putcell("NUM_CORR", 0, n_corr)
        pol.putcell("CORR_TYPE", 0, np.array([9, 10, 11, 12], dtype=np.int32))  # XX XY YX YY
        pol.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.int32))
    with tables.table(f"{path}/DATA_DESCRIPTION", readonly=False, ack=False) as dd:
        dd.addrows(1)
        dd.putcell("SPECTRAL_WINDOW_ID", 0, 0)
        dd.putcell("POLARIZATION_ID", 0, 0)
    direction = np.array([[ra0, dec0]])
    with tables.table(f"{path}/FIELD", readonly=False, ack=False) as field:
        field.addrows(1)
        field.putcell("NAME", 0, "SIM_FIELD")
        field.putcell("NUM_POLY", 0, 0)
        field.putcell("TIME", 0, t0)
        for col in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            field.putcell(col, 0, direction)
    with tables.table(f"{path}/OBSERVATION", readonly=False, ack=False) as obs:
        obs.addrows(1)
        obs.putcell("TELESCOPE_NAME", 0, "SIMULATED")
        obs.putcell("OBSERVER", 0, "imgpipe")
        obs.putcell("PROJECT", 0, "imgpipe-demo")
        obs.putcell("TIME_RANGE", 0, np.array([times[0], times[-1]]))
    return path
