"""Demo data: ``python -m imgpipe.demo make|night|check DIR``.

``make`` makes two small simulated Measurement Sets (two spectral windows around
60 MHz, a 10 Jy point source 0.6° from the phase centre); ``night`` lays them out as
last night's observation, with the data handler and config a nightly deployment reads
(``make nightly-demo``); ``check``, after imaging, checks that the brightest pixel of
each image is where the source was put.
"""

from __future__ import annotations

import glob
import os
import sys
from datetime import datetime, timedelta, timezone

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


NIGHT_HANDLER = """# Last night's demo observation, as a data handler (nenucal's format).
[data_level_path]
L2 = 'L2/%OBS_ID%'

[spectral_windows]
SW01 = [106, 145]
SW02 = [146, 185]
SW_ALL = ['SW01', 'SW02']

[obs_ids]
'{obs_id}' = ['localhost', 'localhost']
"""

NIGHT_CONFIG = """# The nightly demo's imaging: each spectral window of last night, on this machine.
[worker]
nodes = 'localhost'
max_concurrent = 2
temp_dir = '{folder}/scratch'     # each job's reorder files in a folder of its own, removed after
temp_min_free = '1GB'

[data_handler]
config_file = 'data_handler.toml'
data_level = 'L2'

[wsclean]
name = '$sw$'
out-dir = '{folder}/images/$obs_id$'
size = '256 256'
scale = '1amin'
niter = 1000
auto-threshold = 3
mgain = 0.8
no-update-model-required = true   # imaging only: leave MODEL_DATA of the MSs alone
j = 1
"""


def night(folder: str, when: datetime | None = None) -> str:
    """Lay the demo MSs out as the night before ``when`` (now); returns its obs_id."""
    folder = os.path.abspath(folder)
    yesterday = ((when or datetime.now(timezone.utc)) - timedelta(days=1)).strftime("%Y%m%d")
    obs_id = f"{yesterday}_DEMO"
    make(os.path.join(folder, "L2", obs_id))
    with open(os.path.join(folder, "data_handler.toml"), "w") as f:
        f.write(NIGHT_HANDLER.format(obs_id=obs_id))
    with open(os.path.join(folder, "nightly.toml"), "w") as f:
        f.write(NIGHT_CONFIG.format(folder=folder))
    return obs_id


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
    if len(argv) != 2 or argv[0] not in ("make", "night", "check"):
        print("usage: python -m imgpipe.demo make|night|check DIR", file=sys.stderr)
        return 2
    if argv[0] == "make":
        for path in make(argv[1]):
            print(path)
        return 0
    if argv[0] == "night":
        print(night(argv[1]))
        return 0
    return 0 if check(argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
