"""The Prefect server a user configured: PREFECT_API_URL from the environment or from the
active Prefect profile (``prefect config set PREFECT_API_URL=...``).

Why: imgpipe starts a server of its own only when none is configured, and it decides that
before importing Prefect (the import takes seconds; the server starts meanwhile). A team's
shared server is often set in a profile rather than the environment; reading only the
environment sent such runs to a private server, missing from the team's history. This reads
the profile as Prefect 3 does (PREFECT_PROFILES_PATH, else PREFECT_HOME/profiles.toml, else
~/.prefect/profiles.toml; the profile named by PREFECT_PROFILE, else the file's ``active``),
with tomllib only. Not read: a ``.env``, ``prefect.toml`` or ``pyproject.toml`` in the
working directory (set PREFECT_API_URL in the environment for those).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path


def prefect_home(environ: Mapping[str, str] = os.environ) -> Path:
    """PREFECT_HOME as Prefect finds it (without importing Prefect): the one place imgpipe resolves it."""
    return Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def profiles_path(environ: Mapping[str, str]) -> Path:
    if environ.get("PREFECT_PROFILES_PATH"):
        return Path(environ["PREFECT_PROFILES_PATH"]).expanduser()
    return prefect_home(environ) / "profiles.toml"


def configured_api_url(environ: Mapping[str, str]) -> str | None:
    """PREFECT_API_URL as Prefect will see it (environment first, then the active profile); None if unset.

    An unreadable or malformed profiles file counts as no setting (Prefect warns about it itself)."""
    return configured_setting(environ, "PREFECT_API_URL")


DATABASE_URL_SETTINGS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")
"""Prefect 3's names for its server's database (unset: SQLite in PREFECT_HOME)."""


def configured_setting(environ: Mapping[str, str], *names: str) -> str | None:
    """The first of the settings ``names`` set in the environment, else in the active profile; None if none is."""
    for name in names:
        if environ.get(name):
            return environ[name]
    try:
        with open(profiles_path(environ), "rb") as f:
            profiles = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = environ.get("PREFECT_PROFILE") or profiles.get("active")
    table = profiles.get("profiles", {})
    profile = table.get(active) if isinstance(table, dict) and isinstance(active, str) else None
    for name in names:
        value = profile.get(name) if isinstance(profile, dict) else None
        if isinstance(value, str) and value:
            return value
    return None
