"""Group input Measurement Sets into WSClean jobs.

One job per MS by default; ``--combine`` images several MSs together (one per
spectral window and obs_id with a data handler); ``--combine_obs_ids`` also merges
obs_ids, for deep images of one spectral window over many nights.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.core.data_handler import ResolvedMS, Selection


@dataclass(frozen=True)
class Group:
    """MSs imaged together by one WSClean run."""

    ms: tuple[ResolvedMS, ...]
    obs_id: str | None = None
    """The obs_id of the group, None when it spans several (or there is no data handler)."""
    sw: str | None = None


def group_paths(paths: list[ResolvedMS], combine: bool) -> list[Group]:
    """Plain MS paths (no data handler): one group each, or one group of all."""
    if combine:
        return [Group(tuple(paths))] if paths else []
    return [Group((ms,)) for ms in paths]


def group_selections(
    selections: list[Selection], combine: bool, combine_obs_ids: bool, sw_order: tuple[str, ...] = ()
) -> list[Group]:
    """Data handler selections (already in obs_id-then-SW file order) → groups.

    Without ``combine``: one group per MS. With ``combine``: one per (obs_id, sw).
    With both: one per sw over all obs_ids, SWs in file order, MSs in obs_id order.
    """
    if not combine:
        return [Group((ms,), ms.obs_id, ms.sw) for sel in selections for ms in sel.ms]
    if not combine_obs_ids:
        return [Group(sel.ms, sel.obs_id, sel.sw) for sel in selections]
    by_sw: dict[str, list[Selection]] = {}
    for sel in selections:
        by_sw.setdefault(sel.sw, []).append(sel)
    rank = {sw: i for i, sw in enumerate(sw_order)}
    groups = []
    for sw in sorted(by_sw, key=lambda s: rank.get(s, len(rank))):
        sels = by_sw[sw]
        obs = {s.obs_id for s in sels}
        ms = tuple(m for s in sels for m in s.ms)
        groups.append(Group(ms, sels[0].obs_id if len(obs) == 1 else None, sw))
    return groups


def describe(data_handler: bool, combine: bool, combine_obs_ids: bool) -> str:
    """How a run groups its MSs into jobs, in words and in its flags (the report's title)."""
    if not combine:
        return "one job per MS"
    if not data_handler:
        return "-c: every MS in one job"
    if combine_obs_ids:
        return "-c -o: one job per spectral window over all obs_ids"
    return "-c: one job per spectral window and obs_id"
