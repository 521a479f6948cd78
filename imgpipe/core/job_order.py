"""Which jobs start first: the largest first, so that a run ends on short jobs.

Why: with more jobs than slots, a run lasts until its last job ends. Started in plan
order, a long job that happens to come last runs alone while the other slots idle;
started largest first (LPT scheduling), the last jobs are short ones and the slots
finish close together (figures in bench/RESULTS.md, benchmark 2).

A job's size is the sum of its MSs' sizes, read by :mod:`imgpipe.facts.ms_sizes`
and handed in; equal sizes keep plan order.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, TypeVar

LARGEST_FIRST, AS_GIVEN = "largest_first", "as_given"
ORDERS = (LARGEST_FIRST, AS_GIVEN)


class _ReadsMS(Protocol):
    @property
    def ms(self) -> tuple[str, ...]: ...


J = TypeVar("J", bound=_ReadsMS)


def largest_first(jobs: Sequence[J], size: Mapping[str, int]) -> list[J]:
    """``jobs`` by decreasing total size of their MSs (stable: equal sizes keep their order)."""
    return sorted(jobs, key=lambda job: -sum(size.get(ms, 0) for ms in job.ms))
