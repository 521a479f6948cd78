"""Whether a file can be written by anyone but this user, as OpenSSH's StrictModes asks.

A file that makes imgpipe run commands (a config naming ``wsclean``, an ``env_file``)
runs them as the user who runs imgpipe, root on some head nodes. If another account can
write that file, or replace it through its folder, that account can run commands as this
user. A file (and its folder) is this user's alone when it is owned by this user or root
and neither its group nor others may write it.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def this_user() -> str:
    """The name of the account imgpipe runs as."""
    return _owner(os.geteuid())


def _who_else_writes(path: Path, what: str) -> str | None:
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (os.geteuid(), 0):
        return f"{what} {path} belongs to {_owner(st.st_uid)}"
    if mode & stat.S_IWOTH:
        return f"{what} {path} can be written by every account (mode {mode:04o})"
    if mode & stat.S_IWGRP:
        return f"{what} {path} can be written by its group (mode {mode:04o})"
    return None


def others_can_write(path: str | Path) -> str | None:
    """Why an account other than this user (or root) could change ``path``, or None.

    Looks at the file and its folder (the folder would let another account replace the
    file): owner, group and world write bits. Symbolic links are followed."""
    path = Path(path).resolve()
    return _who_else_writes(path, "file") or _who_else_writes(path.parent, "its folder")
