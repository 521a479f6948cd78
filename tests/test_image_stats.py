"""The quick-look of an image: axis labels in words, a title clear of the ticks."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from imgpipe.products.image_stats import axis_labels, quicklook_png


def test_axis_labels_are_words_in_the_image_s_frame():
    assert axis_labels({"EQUINOX": 2000.0}) == ("Right ascension (J2000)", "Declination (J2000)")
    assert axis_labels({"RADESYS": "ICRS"}) == ("Right ascension (ICRS)", "Declination (ICRS)")


def test_a_quick_look_is_drawn_with_those_labels(tmp_path, monkeypatch):
    import matplotlib.figure

    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.cdelt, wcs.wcs.crpix = ["RA---SIN", "DEC--SIN"], [150, 50], [-0.01, 0.01], [16, 16]
    header = wcs.to_header()
    header.remove("RADESYS", ignore_missing=True)  # as WSClean writes it: EQUINOX 2000, no RADESYS
    header["EQUINOX"], header["BUNIT"] = 2000.0, "JY/BEAM"
    fits.PrimaryHDU(np.random.default_rng(1).normal(size=(32, 32)), header).writeto(tmp_path / "img-image.fits")
    drawn = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        drawn["labels"] = (ax.coords[0].get_axislabel(), ax.coords[1].get_axislabel())
        drawn["title"] = ax.get_title()
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    png = quicklook_png(str(tmp_path / "img-image.fits"), str(tmp_path / "img-image.png"), "SW01 20231201_NT04 @ node101")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert drawn == {"labels": ("Right ascension (J2000)", "Declination (J2000)"), "title": "SW01 20231201_NT04 @ node101"}


def big_image(path, n: int = 4096):
    """A WSClean-like float32 image: noise of rms 1e-3 and a 5 Jy source at pixel (x=3000, y=1000)."""
    data = np.random.default_rng(7).normal(0, 1e-3, size=(1, 1, n, n)).astype(np.float32)
    data[0, 0, 1000 % n, 3000 % n] = 5.0
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.cdelt, wcs.wcs.crpix = ["RA---SIN", "DEC--SIN"], [150, 50], [-1e-3, 1e-3], [n / 2, n / 2]
    header = wcs.to_header()
    header["NAXIS"] = 4
    fits.PrimaryHDU(data, header).writeto(path)
    return data[0, 0]


def test_a_big_image_is_measured_from_its_memory_map_peak_exact_rms_from_a_sample(tmp_path):
    import tracemalloc

    from imgpipe.products.image_stats import image_stats

    data = big_image(tmp_path / "big-image.fits")
    full_rms = float(1.4826 * np.median(np.abs(data - np.median(data))))
    del data
    big_image(tmp_path / "small-image.fits", 64)
    image_stats(str(tmp_path / "small-image.fits"))  # (what a first call costs whatever the size: not counted)
    tracemalloc.start()
    st = image_stats(str(tmp_path / "big-image.fits"))
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert st.peak == 5.0
    x, y = WCS(fits.getheader(tmp_path / "big-image.fits")).celestial.world_to_pixel_values(st.peak_ra_deg, st.peak_dec_deg)
    assert (round(float(x)), round(float(y))) == (3000, 1000)
    assert abs(st.rms / full_rms - 1) < 0.005, (st.rms, full_rms)
    assert peak_bytes < 32 * 2**20, f"{peak_bytes / 2**20:.0f} MiB allocated for a 64 MiB image"


def test_a_big_image_s_quick_look_is_drawn_from_block_means(tmp_path):
    import tracemalloc

    from imgpipe.products.image_stats import QUICKLOOK_PIXELS, block_means

    small = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert block_means(small, 3).tolist() == [[7.0, 10.0], [25.0, 28.0]]
    assert block_means(small, 4).tolist() == [[small[:4, :4].mean()]]  # edge rows/columns left out
    big_image(tmp_path / "big-image.fits")
    big_image(tmp_path / "small-image.fits", 64)
    quicklook_png(str(tmp_path / "small-image.fits"), str(tmp_path / "small-image.png"))  # (first-call costs)
    tracemalloc.start()
    png = quicklook_png(str(tmp_path / "big-image.fits"), str(tmp_path / "big-image.png"), "big")
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert QUICKLOOK_PIXELS == 512 and peak_bytes < 32 * 2**20, f"{peak_bytes / 2**20:.0f} MiB for a 64 MiB image"


def test_the_warm_up_loads_the_quick_look_s_modules_and_draws_no_figure():
    """pyplot is not thread-safe: the background warm-up (while the first WSClean runs)
    must not draw a figure of its own beside the job's quick-look."""
    import subprocess
    import sys

    probe = (
        "import sys, matplotlib.figure\n"
        "made = []\n"
        "real = matplotlib.figure.Figure.__init__\n"
        "def counted(self, *a, **k):\n"
        "    made.append(1); real(self, *a, **k)\n"
        "matplotlib.figure.Figure.__init__ = counted\n"
        "from imgpipe.products import image_stats\n"
        "image_stats.load_in_background(); image_stats.load_in_background()\n"
        "assert len(image_stats._loading) == 1\n"
        "image_stats._loading[0].join(120)\n"
        "loaded = [m in sys.modules for m in ('astropy.io.fits', 'astropy.visualization.wcsaxes', 'matplotlib.pyplot')]\n"
        "print(made, loaded, matplotlib.get_backend().lower())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=True).stdout
    assert out.split("\n")[0] == "[] [True, True, True] agg"
