"""Plan a run with this machine's facts: the pure planner fed by :mod:`imgpipe.facts`.

The core decides every job from the config and from facts handed in; here those facts
are the real ones: the option list of the installed WSClean (read once from its help
text and cached) and the channel counts of the MSs (casacore, loaded only when
``channels-out = 'all'`` needs it).
"""

from __future__ import annotations

from imgpipe.core import plan as core_plan
from imgpipe.core.config import Config
from imgpipe.core.grouping import Group
from imgpipe.facts.wsclean_options import known_options


def count_channels(ms_paths: list[str]) -> int:
    # casacore costs ~0.3 s to import: only for configs with channels-out = 'all'
    from imgpipe.facts.ms_metadata import count_distinct_channels

    return count_distinct_channels(ms_paths)


def build_plan(
    config: Config, inputs: list[str], combine: bool = False, combine_obs_ids: bool = False, cwd: str | None = None
) -> core_plan.Plan:
    """Resolve the inputs and decide every job (see :func:`imgpipe.core.plan.build_plan`)."""
    return core_plan.build_plan(
        config, inputs, combine, combine_obs_ids, cwd, known_options=known_options, count_channels=count_channels
    )


def plan_jobs(config: Config, groups: list[Group], warnings=(), cwd: str | None = None) -> core_plan.Plan:
    """Groups → jobs (see :func:`imgpipe.core.plan.plan_jobs`)."""
    return core_plan.plan_jobs(config, groups, warnings, cwd, known_options=known_options, count_channels=count_channels)
