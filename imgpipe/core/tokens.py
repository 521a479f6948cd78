"""``$token$`` placeholders in out-dir and name, e.g. ``'$ms_basename$/images'``.

One job writes into one directory; tokens let a single config spread a night's images
over per-MS or per-observation folders.
"""

from __future__ import annotations

import os
import re

from imgpipe.core.errors import ConfigError

_TOKEN = re.compile(r"\$([^$/]*)\$")
TOKENS = ("ms_in", "ms_basename", "name", "obs_id", "sw")
NAME_TOKENS = ("ms_basename", "obs_id", "sw")  # no path, and not itself
DATA_HANDLER_TOKENS = ("obs_id", "sw")


def obs_id_of(obs_ids: list[str | None]) -> str | None:
    """``$obs_id$`` of a job whose MSs come from these obs_ids (in imaging order).

    One obs_id: itself. Several (``--combine_obs_ids``): ``<first>-<last>``, which can
    never be the value of a one-night job, so a deep image never lands in (and
    replaces) the folder of a single night's.
    """
    distinct = list(dict.fromkeys(o for o in obs_ids if o is not None))
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else f"{distinct[0]}-{distinct[-1]}"


def token_values(last_ms: str, name: str | None, obs_id: str | None, sw: str | None) -> dict[str, str]:
    """Token values for a job; MS-derived ones come from the group's last MS, ``obs_id``
    from :func:`obs_id_of` (the caller's)."""
    ms_in = last_ms.rstrip("/") or "/"
    values = {"ms_in": ms_in, "ms_basename": os.path.basename(ms_in)}
    if name is not None:
        values["name"] = name
    if obs_id is not None:
        values["obs_id"] = obs_id
    if sw is not None:
        values["sw"] = sw
    return values


def check_tokens(template: str, key: str, has_data_handler: bool, where: str, allowed=TOKENS,
                 section: str = "wsclean") -> None:
    """Reject unknown tokens, and data handler tokens without a data handler, before planning."""
    for token in _TOKEN.findall(template):
        if token not in allowed:
            raise ConfigError(f"{where}: [{section}] {key}: unknown token ${token}$ (known: {', '.join('$' + t + '$' for t in allowed)})")
        if token in DATA_HANDLER_TOKENS and not has_data_handler:
            raise ConfigError(f"{where}: [{section}] {key}: ${token}$ needs a [data_handler] section")


def expand_tokens(template: str, values: dict[str, str]) -> str:
    """Replace every ``$token$``; tokens were checked by :func:`check_tokens`."""
    return _TOKEN.sub(lambda m: values[m.group(1)], template)
