"""Date tokens in obs_id patterns: ``{yesterday}_NT04*`` → ``20231201_NT04*``.

A nightly deployment images the night that just ended, so its patterns name that
night relative to the run's date. The date is the run's *scheduled* time (a re-run of
last Tuesday's run images last Monday again), in the schedule's time zone.

Tokens: ``{today}``, ``{yesterday}``, optionally with a strftime format:
``{yesterday:%Y-%m-%d}``. The default format is ``%Y%m%d``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from imgpipe.core.errors import InputError

_TOKEN = re.compile(r"\{([A-Za-z_]+)(?::([^{}]*))?\}")
_OFFSETS = {"today": 0, "yesterday": -1}
DEFAULT_FORMAT = "%Y%m%d"


def zone(name: str):
    """The time zone called ``name`` (``UTC``, ``Europe/Paris``); InputError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone {name!r} (use e.g. 'UTC' or 'Europe/Paris')") from None


def has_date_token(pattern: str) -> bool:
    """Does ``pattern`` name a night relative to the run's date (``{yesterday}``, ``{today}``)?"""
    return bool(_TOKEN.search(pattern))


def night_of(patterns, when: datetime | None = None, tz: str = "UTC") -> str | None:
    """The night a run images, named by its patterns' first date token (``{yesterday}`` →
    ``20231201``, in that token's format), or None when they name no night by date."""
    for pattern in patterns:
        if m := _TOKEN.search(pattern):
            return expand_date_tokens(m.group(0), when, tz)
    return None


def expand_date_tokens(pattern: str, when: datetime | None = None, tz: str = "UTC") -> str:
    """``pattern`` with its date tokens replaced, for the run at ``when`` (default: now)."""
    if "{" not in pattern:
        return pattern
    local = (when or datetime.now(timezone.utc)).astimezone(zone(tz))

    def replace(m: re.Match) -> str:
        name, fmt = m.group(1), m.group(2)
        if name not in _OFFSETS:
            raise InputError(f"unknown date token {{{name}}} in {pattern!r} (known: {{today}}, {{yesterday}})")
        day = local + timedelta(days=_OFFSETS[name])
        return day.strftime(fmt or DEFAULT_FORMAT)

    out = _TOKEN.sub(replace, pattern)
    if "{" in out or "}" in out:
        raise InputError(f"cannot read the date token in {pattern!r} (write e.g. {{yesterday}} or {{yesterday:%Y-%m-%d}})")
    return out
