"""Job records for tests: one factory, so that a new field of Job changes one place."""

from __future__ import annotations

from pathlib import Path

from imgpipe.core.plan import Job


def make_job(
    host: str | None = "localhost",
    argv: tuple[str, ...] | list[str] = ("wsclean",),
    ms: tuple[str, ...] | list[str] = (),
    out_dir: str | Path = "/out",
    name: str = "img",
    obs_id: str | None = None,
    sw: str | None = None,
) -> Job:
    """A Job as the planner would make it; every field has a harmless default."""
    return Job(host, tuple(argv), tuple(ms), obs_id, sw, str(out_dir), name)
