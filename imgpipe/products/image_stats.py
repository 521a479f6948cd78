"""Numbers that say whether a night's image is good: peak, robust rms, dynamic range, beam.

The rms is 1.4826 × the median absolute deviation of the pixels (robust to the
sources themselves), so the dynamic range peak/rms stays meaningful on a field with
bright sources. Also the quick-look PNG (astropy WCS axes, colour bar) written next to
the image for the report and the Prefect UI.

Big images: the FITS is read memory-mapped, never copied whole. The peak and its
position come from every pixel; the rms from a regular subsample of at most
``RMS_SAMPLE`` pixels (a MAD from 4 million noise pixels is within ~0.1 % of the whole
image's); the quick-look shows means of k × k pixel blocks, at most ``QUICKLOOK_PIXELS``
a side, as a screen would show the image anyway. bench/RESULTS.md has the seconds and
memory for 4096² and 8192² images.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import asdict, dataclass

from imgpipe.products.named_files import named

RMS_SAMPLE = 4 * 1024 * 1024
QUICKLOOK_PIXELS = 512


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
    found = named(image_prefix, "-", "image.fits")
    return found[0] if found else None


def image_plane(fits_path: str):
    """(the image's first 2-D plane, memory-mapped as written; its header; its celestial WCS)."""
    # numpy and astropy (~0.5 s): only once a job has an image
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    # (the map outlives the closed file while ``data`` is in use)
    with fits.open(fits_path, memmap=True) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # WSClean's DATE-OBS without MJD-OBS
        header = hdul[0].header
        data = hdul[0].data
        wcs = WCS(header).celestial
    if data is None or data.ndim < 2:
        raise ValueError(f"{fits_path}: no image plane")
    data = data[(0,) * (data.ndim - 2)] if data.ndim > 2 else data  # (FREQ, STOKES of length 1 in front)
    return np.asarray(data), header, wcs


def brightest(data, rows: int = 64) -> tuple[int, int]:
    """(y, x) of the brightest finite pixel, ``rows`` rows at a time (numpy's nanargmax
    would copy a memory-mapped big-endian image whole, twice)."""
    # numpy: with the image
    import numpy as np

    best, where = -np.inf, None
    for start in range(0, data.shape[0], rows):
        block = np.nan_to_num(data[start : start + rows], nan=-np.inf)
        i = int(np.argmax(block))
        if block.flat[i] > best:
            best, where = block.flat[i], (start + i // data.shape[1], i % data.shape[1])
    if where is None:
        raise ValueError("no finite pixel")
    return where


def image_stats(fits_path: str) -> ImageStats:
    # numpy (with astropy, in image_plane): only once a job has an image
    import numpy as np

    data, header, wcs = image_plane(fits_path)
    sample = data.ravel()[:: max(1, math.ceil(data.size / RMS_SAMPLE))]
    finite = sample.astype(np.float32)  # the one copy, of the sample (the medians below may reorder it)
    mask = np.isfinite(finite)
    if not mask.all():
        finite = finite[mask]
    if finite.size == 0:
        raise ValueError(f"{fits_path}: no finite pixel")
    y, x = brightest(data)
    ra, dec = wcs.pixel_to_world_values(x, y)
    peak = float(data[y, x])
    finite -= np.median(finite, overwrite_input=True)  # (partly sorted in place)
    rms = float(1.4826 * np.median(np.abs(finite, out=finite), overwrite_input=True))

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


def block_means(data, k: int):
    """Means of k × k pixel blocks, read k rows at a time (a memory-mapped image is never
    copied whole); edge rows and columns that make no whole block are left out."""
    # numpy: with the image
    import numpy as np

    ny, nx = data.shape[0] // k, data.shape[1] // k
    out = np.empty((ny, nx), dtype=np.float32)
    for i in range(ny):
        out[i] = data[i * k : (i + 1) * k, : nx * k].reshape(k, nx, k).mean(axis=(0, 2), dtype=np.float32)
    return out


def axis_labels(header) -> tuple[str, str]:
    """The quick-look's axis labels, in words: ``Right ascension (J2000)``, ``Declination (J2000)``.

    WSClean writes EQUINOX = 2000 and no RADESYS: J2000 (FK5), as the FITS standard says then.
    """
    frame = (header.get("RADESYS") or "").strip() or ("J2000" if header.get("EQUINOX") == 2000 else "ICRS")
    return f"Right ascension ({frame})", f"Declination ({frame})"


def quicklook_png(fits_path: str, png_path: str, title: str = "") -> str:
    """A PNG of the image with RA/Dec axes and a colour bar; written atomically."""
    data, header, wcs = image_plane(fits_path)
    k = math.ceil(max(data.shape) / QUICKLOOK_PIXELS)
    if k > 1:
        data, wcs = block_means(data, k), wcs[::k, ::k]
    tmp = f"{png_path}.{os.getpid()}.tmp.png"
    _draw(data, header, wcs, title, tmp)
    os.replace(tmp, png_path)
    return png_path


def _pyplot():
    """pyplot on the Agg backend (no display on a compute node), chosen before pyplot loads."""
    # matplotlib (seconds to load with astropy's WCSAxes): only to draw a quick-look
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (after the backend is chosen)

    return plt


def _draw(data, header, wcs, title: str, out) -> None:
    """The quick-look figure of ``data`` into ``out`` (a path or a file object)."""
    plt = _pyplot()
    # astropy's visualisation: only to draw a quick-look
    from astropy.visualization import ImageNormalize, PercentileInterval

    # fixed places for the axes and the colour bar: one drawing (bbox_inches="tight", or a
    # layout engine, draws the figure twice to measure it)
    fig = plt.figure(figsize=(5.2, 4.4), dpi=100)
    ax = fig.add_axes((0.15, 0.13, 0.62, 0.733), projection=wcs)  # (square on the page: 3.2 in)
    norm = ImageNormalize(data, interval=PercentileInterval(99.5))
    im = ax.imshow(data, origin="lower", cmap="inferno", norm=norm)
    # in words, through WCSAxes' own API (plain set_xlabel can leave the UCD, pos.eq.ra)
    for coord, label in zip(ax.coords, axis_labels(header), strict=False):
        coord.set_axislabel(label)
    ax.coords.grid(color="white", alpha=0.2, linestyle="dotted")
    fig.colorbar(im, cax=fig.add_axes((0.8, 0.13, 0.03, 0.733)), label=str(header.get("BUNIT", "")))
    if title:
        ax.set_title(title, fontsize=9, pad=12)  # clear of the top tick marks
    fig.savefig(out, format="png")
    plt.close(fig)


_loading: list[threading.Thread] = []


def load_in_background() -> None:
    """Import what measuring and drawing need (numpy, astropy, matplotlib: seconds on a
    small machine) in a thread, once per process, while the first WSClean runs: its
    image is then measured as soon as it is written, not after those imports."""
    if _loading:
        return

    def load() -> None:
        # what the statistics need first, then the quick-look's modules (WCSAxes is most
        # of a first figure's cost) and the fonts and mathtext of its tick labels (RA's
        # superscript h m s), measured once. No figure: pyplot is not thread-safe, and a
        # warm-up figure drawn while the real one is drawn doubles the first-figure cost
        # on the critical path of a short job
        import astropy.io.fits  # noqa: F401
        import numpy  # noqa: F401
        from astropy.wcs import WCS  # noqa: F401

        _pyplot()
        import astropy.visualization.wcsaxes  # noqa: F401
        from astropy.visualization import ImageNormalize  # noqa: F401
        from matplotlib.backends.backend_agg import RendererAgg
        from matplotlib.font_manager import FontProperties

        renderer = RendererAgg(8, 8, 100)
        for text in (r"$10^\circ$", r"$\mathregular{^h}$", *axis_labels({"EQUINOX": 2000})):
            renderer.get_text_width_height_descent(text, FontProperties(size=9), ismath=text.startswith("$"))

    _loading.append(threading.Thread(target=load, name="imgpipe-load-image-libraries", daemon=True))
    _loading[0].start()
