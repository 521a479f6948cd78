"""Per-job scratch folders (``[worker] temp_dir``): one folder per job, never shared.

Why: WSClean writes its reorder files next to the MS unless told ``-temp-dir``, named
after the MS, so two jobs reading one MS (or two runs) would overwrite each other's.
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
