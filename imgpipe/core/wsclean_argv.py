"""``[wsclean]`` config keys → WSClean argv items (a list, never a shell string).

Rules: a string is shlex-split (``size = '1024 1024'`` → ``-size 1024 1024``), a number
becomes its text, an array gives one item per element, ``true`` gives the bare flag and
``false`` omits it. ``channels-out`` also takes ``'all'`` and ``'everyN'``.
"""

from __future__ import annotations

import difflib
import re
import shlex
from functools import lru_cache
from typing import Any, Callable, Iterable

from imgpipe.core.errors import ConfigError, InputError

CHANNELS_OUT = "channels-out"
TEMP_DIR = "temp-dir"
DATA_COLUMN = "data-column"
DATA_COLUMNS = ("DATA", "CORRECTED_DATA", "MODEL_DATA", "FLOAT_DATA")
"""The visibility columns named when saying which ones an MS has."""


def plain_column(name: str) -> bool:
    """A column name that is looked for in an MS (letters, digits, ``_``); any other value
    is left to WSClean to judge."""
    return name.replace("_", "").isalnum() and len(name) < 256
_EVERY = re.compile(r"^every(\d+)$")


def option_items(key: str, value: Any) -> list[str]:
    """The argv items of one option."""
    if value is True:
        return [f"-{key}"]
    if value is False:
        return []
    if isinstance(value, str):
        return [f"-{key}", *_split(value)]
    if isinstance(value, (int, float)):
        return [f"-{key}", str(value)]
    if isinstance(value, list):
        return [f"-{key}", *(str(v) for v in value)]
    raise ConfigError(f"[wsclean] {key} = {value!r}: unsupported value")


@lru_cache(maxsize=4096)
def _split(value: str) -> tuple[str, ...]:
    """shlex.split, remembered: most values are the same for every job (16 000 jobs split
    ``size = '1024 1024'`` 16 000 times: 0.7 s of a 1.9 s plan before)."""
    return tuple(shlex.split(value))


def check_channels_out(value: Any, where: str = "config") -> None:
    """Validate the form of ``channels-out`` before any MS is read."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{where}: [wsclean] channels-out = {value}: must be at least 1")
        return
    every = _EVERY.match(value) if isinstance(value, str) else None
    if value == "all" or (every is not None and int(every.group(1)) >= 1):
        return
    raise ConfigError(
        f"{where}: [wsclean] channels-out = {value!r}: expected a positive integer, 'all' or 'everyN' (e.g. 'every4')"
    )


def resolve_channels_out(value: Any, ms_paths: Iterable[str], count: Callable[[list[str]], int]) -> int:
    """Number of output channels of a job; ``count`` gives the distinct channels of its MSs."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    paths = list(ms_paths)
    n = count(paths)
    every = 1 if value == "all" else int(_EVERY.match(value).group(1))  # type: ignore[union-attr]  # (checked by the config)
    if n // every < 1:
        raise InputError(
            f"channels-out = {value!r} gives 0 output channels: {n} distinct channel(s) in {', '.join(paths)}"
        )
    return n // every


def build_argv(
    prefix: Iterable[str],
    image_prefix: str,
    options: Iterable[tuple[str, Any]],
    ms_paths: Iterable[str],
    channels_out: int | None = None,
    temp_dir: str | None = None,
) -> list[str]:
    """``prefix + -name <image_prefix> [+ -temp-dir <temp_dir>] + options (file order) + MS paths``.

    ``temp_dir`` (the job's scratch folder) replaces a ``temp-dir`` of the options."""
    argv = [*prefix, "-name", image_prefix, *(("-" + TEMP_DIR, temp_dir) if temp_dir else ())]
    for key, value in options:
        if key == TEMP_DIR and temp_dir:
            continue
        if key == CHANNELS_OUT and channels_out is not None:
            value = channels_out
        argv += option_items(key, value)
    return argv + list(ms_paths)


def check_option_names(keys: list[str], known: frozenset[str], where: str) -> None:
    """Reject option names WSClean does not know, suggesting the closest one."""
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean -{close[0]}?)" if close else ""
            raise ConfigError(f"{where}: [wsclean] {key}: WSClean has no option -{key}{hint}")
