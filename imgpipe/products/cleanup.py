"""What a cancelled or timed-out WSClean leaves behind, and its removal.

Why: WSClean cleans up after itself only when it ends normally. Stopped, it leaves its
temporary images (``<name>-model-I-0000-tmp.fits``, ``-psf-...-tmp.fits``,
``-residual-...-tmp.fits``: checked with WSClean 3.1, each as large as an image; a
cancelled 4096² job left 2.6 GB) and, without ``-temp-dir``, its reorder files beside
the MS (``SW01.MS-part0000-I-b0.tmp``, ``SW01.MS-spw0-parted-meta.tmp``). The reorder
files are removed before the job's MS locks go back (another job may start on that MS
the moment they do, and would write files of the same names).
"""

from __future__ import annotations

import os

from imgpipe.products.named_files import named


def wsclean_temporary_files(job) -> list[str]:
    """The temporary files of ``job``'s WSClean that exist now: its ``*-tmp.fits`` and the
    reorder files of its MSs (beside each MS, or in a ``-temp-dir`` of its argv)."""
    found = named(job.image_prefix, "-", "-tmp.fits")
    folders = []
    if "-temp-dir" in job.argv[:-1]:
        folders.append(job.argv[job.argv.index("-temp-dir") + 1])
    for ms in job.ms:
        ms = os.path.normpath(ms)
        for folder in (os.path.dirname(ms), *folders):
            stem = os.path.join(folder, os.path.basename(ms))
            found += named(stem, "-part", ".tmp") + named(stem, "-spw", "-parted-meta.tmp")
    return sorted(set(found))


def remove(paths: list[str]) -> list[str]:
    """Remove ``paths``; returns those removed (one that cannot be is left, and not listed)."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed
