"""Numbers that say whether a night's image is good: peak, robust rms, dynamic range, beam.

The rms is 1.4826 × the median absolute deviation of the pixels (robust to the
sources themselves), so the dynamic range peak/rms stays meaningful on a field with
bright sources. Also the quick-look PNG (astropy WCS axes, colour bar) written next to
the image for the report and the Prefect UI.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ImageStats:
    image: str
    """The FITS image measured (the MFS image when there are several channels)."""
    peak: float
    """Brightest pixel (image units, Jy/beam for WSClean)."""
    peak_ra_deg: float
    peak_dec_deg: float
    rms: float
    """1.4826 × MAD of all finite pixels."""
    dynamic_range: float | None
    beam_major_arcsec: float | None
    beam_minor_arcsec: float | None
    beam_pa_deg: float | None
    unit: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def main_image(image_prefix: str) -> str | None:
    """The image to look at: ``<prefix>-MFS-image.fits``, else ``<prefix>-image.fits``, else the first ``-image.fits``."""
    for name in (f"{image_prefix}-MFS-image.fits", f"{image_prefix}-image.fits"):
        if os.path.isfile(name):
            return name
    found = sorted(glob.glob(glob.escape(image_prefix) + "-*image.fits"))
    return found[0] if found else None


def image_stats(fits_path: str) -> ImageStats:
    # numpy and astropy (~0.5 s): only once a job has an image
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with fits.open(fits_path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = hdul[0].header
        data = np.squeeze(hdul[0].data).astype(float)
        wcs = WCS(header).celestial
    if data.ndim != 2:
        data = data.reshape(data.shape[-2:]) if data.size == data.shape[-1] * data.shape[-2] else data[(0,) * (data.ndim - 2)]
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise ValueError(f"{fits_path}: no finite pixel")
    y, x = np.unravel_index(np.nanargmax(data), data.shape)
    ra, dec = wcs.pixel_to_world_values(x, y)
    peak = float(data[y, x])
    rms = float(1.4826 * np.median(np.abs(finite - np.median(finite))))

    def beam(key: str, scale: float):
        return float(header[key]) * scale if key in header else None

    return ImageStats(
        image=fits_path,
        peak=peak,
        peak_ra_deg=float(ra),
        peak_dec_deg=float(dec),
        rms=rms,
        dynamic_range=peak / rms if rms > 0 else None,
        beam_major_arcsec=beam("BMAJ", 3600.0),
        beam_minor_arcsec=beam("BMIN", 3600.0),
        beam_pa_deg=beam("BPA", 1.0),
        unit=str(header.get("BUNIT", "")),
    )


def axis_labels(header) -> tuple[str, str]:
    """The quick-look's axis labels, in words: ``Right ascension (J2000)``, ``Declination (J2000)``.

    WSClean writes EQUINOX = 2000 and no RADESYS: J2000 (FK5), as the FITS standard says then.
    """
    frame = (header.get("RADESYS") or "").strip() or ("J2000" if header.get("EQUINOX") == 2000 else "ICRS")
    return f"Right ascension ({frame})", f"Declination ({frame})"


def quicklook_png(fits_path: str, png_path: str, title: str = "") -> str:
    """A PNG of the image with RA/Dec axes and a colour bar; written atomically."""
    # matplotlib, numpy and astropy (~1 s in all): only to draw a quick-look
    import matplotlib

    matplotlib.use("Agg")  # no display on a compute node
    import matplotlib.pyplot as plt  # (after the backend is chosen)
    import numpy as np
    from astropy.io import fits
    from astropy.visualization import ImageNormalize, PercentileInterval
    from astropy.wcs import WCS, FITSFixedWarning

    with fits.open(fits_path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = hdul[0].header
        data = np.squeeze(hdul[0].data).astype(float)
        wcs = WCS(header).celestial
    fig = plt.figure(figsize=(5.2, 4.4), dpi=100)
    ax = fig.add_subplot(projection=wcs)
    norm = ImageNormalize(data, interval=PercentileInterval(99.5))
    im = ax.imshow(data, origin="lower", cmap="inferno", norm=norm)
    # in words, through WCSAxes' own API (plain set_xlabel can leave the UCD, pos.eq.ra)
    for coord, label in zip(ax.coords, axis_labels(header), strict=False):
        coord.set_axislabel(label)
    ax.coords.grid(color="white", alpha=0.2, linestyle="dotted")
    fig.colorbar(im, ax=ax, label=str(header.get("BUNIT", "")))
    if title:
        ax.set_title(title, fontsize=9, pad=12)  # clear of the top tick marks
    tmp = f"{png_path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
