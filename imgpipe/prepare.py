"""Prepare a run: a request → a checked plan, with this machine's facts.

The one way a run is prepared, for the CLI and the flow alike: expand the date tokens,
read the config, resolve the inputs into groups, plan the jobs. The core decides every
job from the config and from facts handed in; here those facts are the real ones: the
option list of the installed WSClean (read once from its help text and cached) and the
channel counts of the MSs (casacore, loaded only when ``channels-out = 'all'`` needs
it). A CLI run prepares before Prefect starts (a bad input fails in milliseconds) and
hands the result to the flow; a deployment run prepares inside the flow, step by step
as tasks.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from imgpipe.core import plan as core_plan
from imgpipe.core.config import Config, WorkerConfig, load_config
from imgpipe.core.config_commands import code_files, named_commands
from imgpipe.core.date_tokens import expand_date_tokens
from imgpipe.core.errors import ConfigError
from imgpipe.core.grouping import Group
from imgpipe.core.job_resources import Capacity, fits_nowhere, place, size_unknown, slurm_capacity
from imgpipe.core.mpi import distributed, parse_nodes_mpi
from imgpipe.core.nodes import SLURM, is_local
from imgpipe.core.request import RunRequest
from imgpipe.facts.file_trust import others_can_write, this_user
from imgpipe.facts.ms_columns import columns_among
from imgpipe.facts.ms_files import find_chunks
from imgpipe.facts.node_capacity import local_capacity
from imgpipe.facts.wsclean_options import cached_options, known_options


def count_channels(ms_paths: list[str]) -> int:
    # casacore costs ~0.3 s to import: only for configs with channels-out = 'all'
    from imgpipe.facts.ms_metadata import count_distinct_channels

    return count_distinct_channels(ms_paths)


class PreparedRun:
    """A request made into a plan, and what was checked of the nodes meanwhile.

    A plain class, not a dataclass, on purpose: the CLI hands it to the flow as a
    parameter, and Prefect records a parameter through FastAPI's encoder, which would
    expand a dataclass into every job's argv; this class gives it ``dict(self)``, a
    two-field summary (the jobs themselves are the run's task runs).
    """

    __slots__ = ("request", "inputs", "config", "plan", "down", "mpi_checked", "private_server")

    def __init__(self, request: RunRequest, inputs: tuple[str, ...], config: Config, plan: core_plan.Plan,
                 down: dict[str, str] | None = None, mpi_checked: bool = False, private_server: bool = False):
        self.request = request
        self.inputs = inputs
        """The request's patterns with their date tokens expanded."""
        self.config = config
        self.plan = plan
        self.down = down
        """Nodes found unreachable (``{host: why}``) once they were checked; None: not checked yet."""
        self.mpi_checked = mpi_checked
        self.private_server = private_server
        """The run's Prefect server is its own embedded one, which no other run reaches."""

    def __iter__(self):
        yield "planned_by", "imgpipe command line"
        yield "jobs", len(self.plan.jobs)

    def checked(self, down: dict[str, str] | None = None, mpi: bool = False, private_server: bool = False) -> "PreparedRun":
        """The same run, with what a check found (unreachable nodes, the MPI commands, its own server)."""
        return PreparedRun(self.request, self.inputs, self.config, self.plan,
                           down if down is not None else self.down, self.mpi_checked or mpi,
                           self.private_server or private_server)


def expand_inputs(request: RunRequest, when: datetime | None = None) -> tuple[str, ...]:
    """The patterns with ``{yesterday}``/``{today}`` for ``when`` (None: now) in the request's time zone."""
    return tuple(expand_date_tokens(p, when, request.timezone) for p in request.patterns)


def read_config(request: RunRequest) -> Config:
    """The request's config, read and checked; a config naming commands only from files
    that no one but this user can write (see :mod:`imgpipe.facts.file_trust`)."""
    config = load_config(request.config, request.cwd)
    for path in code_files(config):
        if why := others_can_write(path):
            raise ConfigError(
                f"{config.path}: names commands imgpipe runs as {this_user()} "
                f"({', '.join(named_commands(config))}), but {why}: a config that names commands, the files it "
                "names and their folders must be writable by you alone (chmod go-w; see docs/deployments.md)")
    return distributed(config, parse_nodes_mpi(request.nodes_mpi)) if request.nodes_mpi else config


def plan_jobs(config: Config, groups: list[Group], warnings=(), cwd: str | None = None,
              dry_run: bool = False) -> core_plan.Plan:
    """Groups → jobs (see :func:`imgpipe.core.plan.plan_jobs`), with the real facts; jobs
    for this machine already get their share of it (the dry run and plan show it).

    A dry run runs no command the config names: the option list of its own ``[worker]
    wsclean`` comes from the cache of an earlier run, or is not checked."""
    named = config.worker.wsclean != WorkerConfig().wsclean
    options = cached_options if dry_run and named else known_options
    plan = core_plan.plan_jobs(config, groups, warnings, cwd, known_options=options, count_channels=count_channels,
                               columns_among=columns_among)
    return with_local_shares(plan)


def with_local_shares(plan: core_plan.Plan) -> core_plan.Plan:
    """``plan`` with each job pinned to this machine given its share of it (cores, memory)."""
    here = [i for i, job in enumerate(plan.jobs) if job.ask is not None and job.given is None and job.host
            and is_local(job.host)]
    if not here:
        return plan
    capacity, jobs = local_capacity(), list(plan.jobs)
    for i in here:
        jobs[i] = place(jobs[i], capacity)
    return replace(plan, jobs=tuple(jobs))


def known_size(config: Config, host: str) -> Capacity | None:
    """``host``'s cores and memory where known without connecting (this machine; SLURM
    steps by ``slurm_options``), else None."""
    if config.prefect.dask:
        return None
    if is_local(host):
        return local_capacity()
    return slurm_capacity(config.worker.slurm_options) if host == SLURM else None


def node_sizes(config: Config, plan: core_plan.Plan) -> dict[str, dict | str]:
    """Each node of the plan: its size where known without connecting, else when and how it
    will be known."""
    out: dict[str, dict | str] = {}
    for host in plan.hosts():
        size = known_size(config, host)
        out[host] = size.to_json() if size else size_unknown(host, config.worker, config.prefect.dask)
    return out


def too_big_for_known_nodes(config: Config, plan: core_plan.Plan) -> str | None:
    """What the run would refuse before any job starts: a category bigger than every node
    it may run on, among the nodes whose size is known without connecting (a dry run
    says it; the run checks again once it has reached its nodes)."""
    return fits_nowhere(plan.jobs, plan.pool, lambda host: known_size(config, host))


def resolve_groups(config: Config, inputs: list[str], combine: bool = False, combine_obs_ids: bool = False,
                   cwd: str | None = None) -> tuple[list[Group], list[str]]:
    """Inputs → groups (see :func:`imgpipe.core.plan.resolve_groups`), chunks found on disk."""
    return core_plan.resolve_groups(config, list(inputs), combine, combine_obs_ids, cwd, find_chunks=find_chunks)


def build_plan(
    config: Config, inputs: list[str], combine: bool = False, combine_obs_ids: bool = False, cwd: str | None = None,
    dry_run: bool = False,
) -> core_plan.Plan:
    """Resolve the inputs and decide every job (see :func:`imgpipe.core.plan.build_plan`)."""
    groups, warnings = resolve_groups(config, inputs, combine, combine_obs_ids, cwd)
    return plan_jobs(config, groups, warnings, cwd, dry_run)


def prepare_run(request: RunRequest, when: datetime | None = None) -> PreparedRun:
    """The whole preparation in one call; raises ImgpipeError (one clear line) on bad input."""
    inputs = expand_inputs(request, when)
    config = read_config(request)
    plan = build_plan(config, list(inputs), request.combine, request.combine_obs_ids, request.cwd,
                      config.worker.dry_run if request.dry_run is None else request.dry_run)
    return PreparedRun(request, inputs, config, plan)
