"""Per-job scratch folders (``[worker] temp_dir`` or ``[wsclean] temp-dir``): one folder
per job, never shared.

Why: WSClean writes its reorder files next to the MS unless told ``-temp-dir``, named
after the MS, so two jobs reading one MS (or two runs) would overwrite each other's.
In a ``-temp-dir`` they are named after the MS's *base name* alone (WSClean 3.1 and 3.6:
``<temp-dir>/SW01.MS-part0000-…``), so two MSs called ``SW01.MS`` from two nights, in
one job or in two jobs sharing a temp dir, write the same files: the deep image was one
night's (3.1), or neither's (3.6, which still exits 0). Hence a folder per job, and
inside it a link of a name of its own for each MS whose base name is not unique in the
job (:func:`ms_links`), given to WSClean in place of the MS.
A folder per job, named after the job's images, keeps them apart and is stable from
run to run (so the argv, and with it resuming, does not change). The job's wrapper
creates it on the node, writes its owner (``.imgpipe-owner``: the wrapper's pid and
token) and removes it when the job ends; a folder whose owner is gone (a killed run)
is removed by the next job that starts beside it.
"""

from __future__ import annotations

import hashlib
import os
import re

SCRATCH_PREFIX = "imgpipe-"
OWNER_FILE = ".imgpipe-owner"


def scratch_dir(temp_dir: str, image_prefix: str, name: str) -> str:
    """``<temp_dir>/imgpipe-<name>-<8 hex of the image prefix>``."""
    tag = hashlib.sha1(image_prefix.encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:60]
    return os.path.join(os.path.normpath(temp_dir), f"{SCRATCH_PREFIX}{safe}-{tag}")


def ms_links(scratch: str, ms_paths: list[str]) -> tuple[tuple[str, str], ...]:
    """(link, MS) for each MS whose base name another MS of the job shares: ``<scratch>/<k>-<base>``,
    k its place in the job (1-based). Empty when every base name is unique (the common case)."""
    bases = [os.path.basename(os.path.normpath(p)) for p in ms_paths]
    return tuple((os.path.join(scratch, f"{k}-{base}"), path)
                 for k, (path, base) in enumerate(zip(ms_paths, bases, strict=True), 1) if bases.count(base) > 1)
