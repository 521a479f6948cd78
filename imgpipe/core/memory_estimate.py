"""How much memory a WSClean job will take, before it runs: for admission and the log.

WSClean's peak is, to a good approximation (measured here on WSClean 3.1, see
``bench/RESULTS.md``, benchmark 10, and ``docs/resources.md``):

- a fixed part (the program, casacore, FFTW plans);
- image planes of ``width × height`` 4-byte floats: about :data:`GRIDDING_PLANES` for the
  gridder (a padded, complex, double-precision grid and its w-layers), plus
  :data:`PLANES_PER_IMAGE` for each output channel and polarisation (residual, model and
  PSF, all held at once when channels are joined);
- a share of the visibilities it reads, proportional to the bytes of the MSs' main tables;
- the deconvolution settings: no cleaning (``niter`` 0 or absent, WSClean's default) holds
  only :data:`NO_CLEAN_PLANES` (each image is gridded and written in turn); multi-scale
  holds scale-convolved copies (:data:`MULTISCALE_PLANES` more, and
  :data:`MULTISCALE_PLANES_PER_IMAGE` per image); each extra ``parallel-gridding`` gridder
  adds its own buffers, ``parallel-deconvolution`` planes of its subimages per image.

The coefficients are least-squares fits of WSClean runs (256² to 4096², 1 to 16 channels,
MSs of 3 MB to 720 MB), divided by 0.85 so that the estimate errs on the safe side. The
goal: never more than 10 % below the peak, never more than twice it; benchmark 10 checks it
on runs the fits did not see.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

FIXED_MIB = 54.0
GRIDDING_PLANES = 15.0
PLANES_PER_IMAGE = 3.0
VISIBILITY_FRACTION = 0.14
"""MiB of peak per MiB of the MSs' main tables."""
NO_CLEAN_PLANES = 8.0
"""Image planes of a job that does not clean, in place of the gridding and per-image ones."""
MULTISCALE_PLANES = 17.0
MULTISCALE_PLANES_PER_IMAGE = 9.0
EXTRA_GRIDDER_MIB = 106.0
"""MiB for each ``parallel-gridding`` gridder past the first (measured: the same at 1024² and 2048²)."""
PARALLEL_DECONVOLUTION_PLANES = 8.0
PARALLEL_DECONVOLUTION_SUBPLANES_PER_IMAGE = 12.0
"""With ``parallel-deconvolution``: planes of its subimage size (at most the value), per image."""

_POL_WORDS = re.compile(r"[,\s]+")


def polarisations(pol: Any) -> int:
    """Images per channel for ``-pol``: ``I`` → 1, ``IQUV`` → 4, ``xx,yy`` → 2 (``iv`` → 2)."""
    if pol is None or pol is False:
        return 1  # WSClean's default: I
    text = str(pol).strip().lower()
    words = [w for w in _POL_WORDS.split(text) if w]
    if len(words) > 1:
        return len(words)
    word = words[0] if words else "i"
    if word in ("xx", "yy", "xy", "yx", "rr", "ll", "rl", "lr", "i", "q", "u", "v"):
        return 1
    return max(1, len(word)) if set(word) <= set("iquv") else 1


def image_size(size: Any) -> tuple[int, int] | None:
    """``'1024 1024'`` / ``1024`` / ``[1024, 1024]`` → (width, height); None if not given or unreadable."""
    if size is None or size is False:
        return None
    words = [str(w) for w in size] if isinstance(size, list) else shlex.split(str(size))
    try:
        numbers = [int(w) for w in words]
    except ValueError:
        return None
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    return (numbers[0], numbers[1]) if len(numbers) >= 2 else None


def image_mib(options: dict, channels_out: int | None) -> float | None:
    """The part of the estimate known at planning (MiB): image planes and deconvolution
    settings, from the job's ``[wsclean]`` options; None without an image size."""
    size = image_size(options.get("size"))
    if size is None:
        return None
    plane_mib = size[0] * size[1] * 4 / 2**20
    if not cleans(options):
        return plane_mib * NO_CLEAN_PLANES + _gridders_mib(options)
    images = max(1, channels_out or 1) * polarisations(options.get("pol"))
    planes = GRIDDING_PLANES + PLANES_PER_IMAGE * images
    if given(options.get("multiscale")):
        planes += MULTISCALE_PLANES + MULTISCALE_PLANES_PER_IMAGE * images
    mib = plane_mib * planes + _gridders_mib(options)
    largest = number(options.get("parallel-deconvolution"))
    if largest and largest > 0:
        subplane_mib = min(largest, size[0]) * min(largest, size[1]) * 4 / 2**20
        mib += plane_mib * PARALLEL_DECONVOLUTION_PLANES + subplane_mib * PARALLEL_DECONVOLUTION_SUBPLANES_PER_IMAGE * images
    return mib


def given(value: Any) -> bool:
    """A flag is on when its key is there and not ``false`` (``true``, ``''``, a value)."""
    return value is not None and value is not False


def number(value: Any) -> float | None:
    """``1000`` / ``'1e4'`` / ``[2]`` → a float; None when unreadable (WSClean will say so)."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def cleans(options: dict) -> bool:
    """WSClean deconvolves only with ``niter`` above 0 (its default is 0: a dirty image)."""
    niter = number(options.get("niter"))
    return niter is not None and niter > 0


def _gridders_mib(options: dict) -> float:
    gridders = number(options.get("parallel-gridding")) or 1
    return EXTRA_GRIDDER_MIB * max(0, int(gridders) - 1)


def estimate_mib(image_part_mib: float | None, ms_bytes: int) -> float | None:
    """The job's expected peak (MiB): :func:`image_mib` plus the fixed and visibility parts."""
    if image_part_mib is None:
        return None
    return FIXED_MIB + image_part_mib + VISIBILITY_FRACTION * ms_bytes / 2**20
