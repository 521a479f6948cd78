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
