"""Demo data: ``python -m imgpipe.demo make DIR`` and ``python -m imgpipe.demo check DIR``.

Makes two small simulated Measurement Sets (two spectral windows around 60 MHz, a
10 Jy point source 0.6° from the phase centre) and, after imaging, checks that the
brightest pixel of each image is where the source was put.
"""

from __future__ import annotations

import glob
import os
import sys

from imgpipe.products.fits_peak import brightest_pixel, pixel_distance

# The demo sky: phase centre and one source, shared by `make` and `check`.
RA0, DEC0 = 150.0, 50.0
SOURCE = (151.0, 50.3, 10.0)
SPECTRAL_WINDOWS = {"SW01": [60e6, 61e6, 62e6, 63e6], "SW02": [64e6, 65e6, 66e6, 67e6]}


def make(folder: str) -> list[str]:
    # python-casacore: only to write the demo MSs
    from imgpipe.demo.simulate import PointSource, make_ms

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, (sw, freqs) in enumerate(SPECTRAL_WINDOWS.items()):
        path = os.path.join(folder, f"{sw}.MS")
        if not os.path.isdir(path):
            make_ms(path, [PointSource(*SOURCE)], RA0, DEC0, freqs, noise_jy=0.5, seed=1 + i)
        paths.append(path)
    return paths


def check(folder: str) -> bool:
    images = sorted(glob.glob(os.path.join(folder, "**", "*-MFS-image.fits"), recursive=True))
    images = images or sorted(glob.glob(os.path.join(folder, "**", "*-image.fits"), recursive=True))
    ok = bool(images)
    for image in images:
        peak = brightest_pixel(image)
        dist = pixel_distance(image, SOURCE[0], SOURCE[1])
        good = dist <= 1.5
        ok &= good
        print(
            f"{'OK ' if good else 'BAD'} {image}: peak {peak.value:.2f} Jy/beam at RA {peak.ra_deg:.3f}° Dec {peak.dec_deg:.3f}°, "
            f"{dist:.2f} px from the simulated source (RA {SOURCE[0]}°, Dec {SOURCE[1]}°)"
        )
    if not images:
        print(f"no image found under {folder}")
    return ok


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("make", "check"):
        print("usage: python -m imgpipe.demo make|check DIR", file=sys.stderr)
        return 2
    if argv[0] == "make":
        for path in make(argv[1]):
            print(path)
        return 0
    return 0 if check(argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
