"""How much memory a WSClean job will take, before it runs: for admission and the log.

WSClean's peak is, to a good approximation (measured here on WSClean 3.1, see
``bench/RESULTS.md``, benchmark 10):

- a fixed part (the program, casacore, FFTW plans);
- image planes of ``width × height`` 4-byte floats: about :data:`GRIDDING_PLANES` for the
  gridder (a padded, complex, double-precision grid and its w-layers), plus
  :data:`PLANES_PER_IMAGE` for each output channel and polarisation (residual, model and
  PSF, all held at once when channels are joined);
- a share of the visibilities it reads, proportional to the bytes of the MSs' main tables.

The coefficients are a least-squares fit of 16 runs (256² to 4096², 1 to 16 channels, MSs
of 9 MB to 720 MB), divided by 0.85 so that the estimate errs on the safe side: on those
runs the measured peak was 0.75 to 0.96 of it. The goal: never more than 10 % below the
peak, never more than twice it; benchmark 10 checks it on other runs.
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
    """The image part of the estimate (MiB), known at planning; None without an image size."""
    size = image_size(options.get("size"))
    if size is None:
        return None
    plane_mib = size[0] * size[1] * 4 / 2**20
    images = max(1, channels_out or 1) * polarisations(options.get("pol"))
    return plane_mib * (GRIDDING_PLANES + PLANES_PER_IMAGE * images)


def estimate_mib(image_part_mib: float | None, ms_bytes: int) -> float | None:
    """The job's expected peak (MiB): :func:`image_mib` plus the fixed and visibility parts."""
    if image_part_mib is None:
        return None
    return FIXED_MIB + image_part_mib + VISIBILITY_FRACTION * ms_bytes / 2**20
