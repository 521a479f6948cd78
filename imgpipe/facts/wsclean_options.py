"""Which options the installed WSClean knows, read from its own help text.

WSClean prints its option list when run with no argument. Checking the config's keys
against it catches typos before a night of jobs starts, with a suggestion. The list is
cached per process and on disk (keyed by the executable's path, size and mtime), since
a container prefix can take seconds to start.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from imgpipe.core.errors import WSCleanNotFound

_OPTION_LINE = re.compile(r"^-[A-Za-z]")
_OPTION = re.compile(r"(?<![\w-])-([A-Za-z][A-Za-z0-9-]*)")
_BRACKETS = re.compile(r"<[^>]*>|\[[^\]]*\]|\"[^\"]*\"")


def parse_help(text: str) -> frozenset[str]:
    """Option names (without dash) from WSClean's help text: lines that start with ``-``."""
    names = set()
    for line in text.splitlines():
        if _OPTION_LINE.match(line):
            names.update(_OPTION.findall(_BRACKETS.sub(" ", line)))
    return frozenset(names)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgpipe"


def _fingerprint(prefix: tuple[str, ...]) -> str | None:
    """Identity of the executable (and of files in the prefix, e.g. a container image)."""
    exe = shutil.which(prefix[0])
    if exe is None:
        return None
    parts = list(prefix)
    for item in [exe, *prefix[1:]]:
        if os.path.isfile(item):
            st = os.stat(os.path.realpath(item))
            parts.append(f"{os.path.realpath(item)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def cached_options(prefix: tuple[str, ...]) -> frozenset[str] | None:
    """The options cached by an earlier run of the same WSClean, or None; runs nothing."""
    key = _fingerprint(prefix)
    return None if key is None else _cached(key)


def _cache_file(key: str) -> Path:
    return _cache_dir() / f"wsclean-options-{key}.json"


def _cached(key: str) -> frozenset[str] | None:
    try:
        return frozenset(json.loads(_cache_file(key).read_text()))
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def known_options(prefix: tuple[str, ...]) -> frozenset[str]:
    """Options of the WSClean started by ``prefix``; raises :class:`WSCleanNotFound`."""
    key = _fingerprint(prefix)
    if key is None:
        raise WSCleanNotFound(f"WSClean not found: {prefix[0]!r} is not on PATH (install it, e.g. apt-get install wsclean, or set [worker] wsclean)")
    if (cached := _cached(key)) is not None:
        return cached
    cache = _cache_file(key)
    try:
        proc = subprocess.run(list(prefix), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise WSCleanNotFound(f"cannot run WSClean ({' '.join(prefix)}): {err.strerror}") from None
    except subprocess.TimeoutExpired:
        raise WSCleanNotFound(f"WSClean ({' '.join(prefix)}) did not print its help within 120 s") from None
    names = parse_help(proc.stdout + proc.stderr)
    if "name" not in names or "size" not in names:
        raise WSCleanNotFound(f"{' '.join(prefix)} does not look like WSClean (no option list in its help text)")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(names)))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home only costs a re-run of the help next time
    return names
