"""The job plan: which WSClean command runs where, decided before anything runs.

Planning is pure (no Prefect, no SSH) and checks everything it can, so that a bad
config fails in milliseconds with one clear line. The plan's JSON form
(``--plan-json``) is a stable contract for other tools.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Collection

from imgpipe.core.config import Config, compile_file_host_pattern
from imgpipe.core.data_handler import FindChunks, ResolvedMS, load_data_handler
from imgpipe.core.errors import InputError, WSCleanNotFound
from imgpipe.core.grouping import Group, group_paths, group_selections
from imgpipe.core.job_resources import Ask, Given, apply, ask_for, give, shared_by
from imgpipe.core.memory_estimate import image_mib
from imgpipe.core.mpi import mpirun_prefix
from imgpipe.core.nodes import is_ssh
from imgpipe.core.scratch import ms_links, scratch_dir
from imgpipe.core.tokens import expand_tokens, obs_id_of, token_values
from imgpipe.core.wsclean_argv import (
    CHANNELS_OUT,
    DATA_COLUMN,
    DATA_COLUMNS,
    TEMP_DIR,
    build_argv,
    check_option_names,
    plain_column,
    resolve_channels_out,
)

KnownOptions = Callable[[tuple[str, ...]], "frozenset[str] | None"]
"""WSClean's option names for a prefix; None: not read (a dry run does not run a WSClean the config names)."""
"""WSClean prefix → the option names it accepts (raises WSCleanNotFound)."""
CountChannels = Callable[[list[str]], int]
"""MS paths → number of distinct channels (for ``channels-out = 'all'``)."""
ColumnsAmong = Callable[[str, tuple[str, ...]], "frozenset[str] | None"]
"""MS path, column names → those its main table has (None: it cannot be read)."""


def _no_column(column: str, ms_paths: list[str], columns_among: ColumnsAmong | None) -> str | None:
    """Why the job cannot image ``column`` (an MS it reads here lacks it), or None.
    Only a plain column name is looked for; an MS not readable here is WSClean's to judge."""
    if columns_among is None or not plain_column(column):
        return None
    for path in ms_paths:
        found = columns_among(path, (column, *DATA_COLUMNS))
        if found is not None and column not in found:
            has = ", ".join(c for c in DATA_COLUMNS if c in found) or "none of " + ", ".join(DATA_COLUMNS)
            return f"Measurement Set {path} has no {column} column (its data columns: {has})"
    return None


@dataclass(frozen=True)
class Job:
    """One WSClean run."""

    host: str | None
    """Node that runs it; None in a plan: any node of the pool (decided when a slot frees)."""
    argv: tuple[str, ...]
    ms: tuple[str, ...]
    obs_id: str | None
    sw: str | None
    out_dir: str
    name: str
    scratch: str | None = None
    """This job's own scratch folder on its node (``[worker] temp_dir``), made and removed around it."""
    ask: Ask | None = None
    """Its category, or a fair share of its node, and the WSClean flags imgpipe adds (None: none)."""
    given: Given | None = None
    """The cores and memory it was given (a category at plan time, a share once on its node)."""
    env: tuple[tuple[str, str], ...] = ()
    """Variables set for it (before ``env_file``): the thread counts of its libraries."""
    plan_argv: tuple[str, ...] | None = None
    """``argv`` before ``-j``/``-abs-mem`` were added (None: none were): what an earlier run of
    the same job is recognised by, since cores and memory do not change the images."""
    ms_links: tuple[tuple[str, str], ...] = ()
    """(link, MS) pairs made in the scratch folder before WSClean starts, given to it in place
    of MSs that share a base name (see :func:`imgpipe.core.scratch.ms_links`)."""

    @property
    def science_argv(self) -> tuple[str, ...]:
        """The argv without the flags of its resources (see ``plan_argv``)."""
        return self.plan_argv if self.plan_argv is not None else self.argv

    @property
    def data_column(self) -> str | None:
        """The column WSClean reads (``-data-column``) when a plain name, for checking that
        each MS has it; None: WSClean's default, or a value not looked for."""
        argv = self.science_argv
        for i, arg in enumerate(argv[:-1]):
            if arg == "-data-column":
                name = argv[i + 1]
                return name if plain_column(name) else None
        return None

    @property
    def image_prefix(self) -> str:
        return f"{self.out_dir}/{self.name}"

    @property
    def log_path(self) -> str:
        return f"{self.out_dir}/{self.name}.log"

    @property
    def label(self) -> str:
        """Short human name: ``SW01 20231201_NT04`` or the MS base name(s)."""
        if self.sw or self.obs_id:
            what = " ".join(x for x in (self.sw, self.obs_id) if x)
        else:
            what = os.path.basename(self.ms[-1]) + (f" (+{len(self.ms) - 1} MS)" if len(self.ms) > 1 else "")
        return f"{what} @ {self.host or 'any node'}"

    def command_line(self) -> str:
        """The argv as one shell-quoted line (for display; execution uses the list)."""
        return shlex.join(self.argv)

    def to_json(self) -> dict:
        out = {
            "host": self.host,
            "argv": list(self.argv),
            "ms": list(self.ms),
            "obs_id": self.obs_id,
            "sw": self.sw,
            "out_dir": self.out_dir,
            "temp_dir": self.scratch,
            "resources": self.given.to_json() if self.given else self.pending_resources(),
            "env": dict(self.env),
        }
        if self.ms_links:  # only MSs that share a base name are linked: rare
            out["ms_links"] = dict(self.ms_links)
        return out

    def pending_resources(self) -> str | None:
        """What a job's resources will be when they are decided only on its node (for the plan)."""
        if self.ask is None or self.given is not None:
            return None
        return "a share of its node, decided when imgpipe reaches it"


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    warnings: tuple[str, ...] = ()
    pool: tuple[str, ...] = ("localhost",)
    """Nodes that take the jobs without a host (``[worker] nodes``)."""
    output_root: str | None = None
    """Where the images are (see :func:`output_root`); None: under each MS."""

    def to_json(self, nodes: dict | None = None) -> dict:
        """``nodes``: each node's size as far as the plan knows it (``prepare.node_sizes``)."""
        out: dict = {"pool": list(self.pool)}
        if nodes is not None:
            out["nodes"] = nodes
        out["jobs"] = [job.to_json() for job in self.jobs]
        return out

    def images_root(self) -> str | None:
        """The config's output root, or else the folder common to the jobs' out-dirs."""
        if self.output_root or not self.jobs:
            return self.output_root
        return os.path.commonpath([job.out_dir for job in self.jobs])

    def hosts(self, jobs: "tuple[Job, ...] | list[Job] | None" = None) -> list[str]:
        """Every node this plan may use: pinned hosts, then the pool if a job needs it.
        ``jobs``: only the nodes these jobs need (those still to run)."""
        jobs = self.jobs if jobs is None else jobs
        hosts = [job.host for job in jobs if job.host]
        if any(job.host is None for job in jobs):
            hosts += self.pool
        return list(dict.fromkeys(hosts))

    def shares_left(self, not_to_run: "Collection[int]", max_concurrent: int) -> "Plan":
        """This plan with each job still to run sharing its node only with the jobs left that
        may run there (at most ``max_concurrent``): a job imaged alone on a re-run gets the
        whole node, not the share it would have had among the night's jobs.
        ``not_to_run``: indices of the jobs an earlier run did (or that are refused)."""
        left = [job for i, job in enumerate(self.jobs) if i not in not_to_run]

        def sharing(job: Job) -> int:
            if job.host is None:
                return sum(1 for j in left if j.host is None or j.host in self.pool)
            return sum(1 for j in left if j.host == job.host or (j.host is None and job.host in self.pool))

        jobs = tuple(job if i in not_to_run else shared_by(job, max(1, min(max_concurrent, sharing(job))))
                     for i, job in enumerate(self.jobs))
        return replace(self, jobs=jobs)

    def dry_run_lines(self) -> list[str]:
        anywhere = f"any of {','.join(self.pool)}"
        return [f"{job.host or anywhere}: {job.command_line()}" for job in self.jobs]


def with_category(job: Job) -> Job:
    """A job of a category is given its resources at once (they do not depend on its node)."""
    if job.ask is None or job.ask.category is None:
        return job
    return apply(job, give(job.ask, None, job.host or ""), job.ask)


def output_root(out_dir_template: str, cwd: str) -> str | None:
    """The folder a config's images are under, whatever the jobs: the out-dir template up
    to its first token (``/data/images/$obs_id$`` → ``/data/images``), so a night's
    report lands in the same place for any set of jobs; None when the template starts
    with a token (``$ms_in$/images``: each MS's own folder)."""
    fixed = out_dir_template.split("$", 1)[0]
    if "$" in out_dir_template and not fixed.endswith("/"):
        fixed = os.path.dirname(fixed)  # '/data/img_$sw$': the folder holding them
    if not fixed:
        return None
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(fixed)))


def run_name(config_path: str | Path, inputs: list[str] | tuple[str, ...], n_jobs: int | None = None, width: int = 60) -> str:
    """What a run images, as its name in the Prefect UI: ``nightly.toml 20231201_* · 48 jobs``.

    Inputs that are paths show their last part (``/data/obs1/SW01.MS`` → ``SW01.MS``);
    a long list is cut with ``… (+N)`` so the UI's run list stays readable.
    """
    shown = [os.path.basename(os.path.normpath(i)) if "/" in i else i for i in inputs]
    text, used = "", 0
    for item in shown:
        candidate = f"{text} {item}".strip()
        if len(candidate) > width and text:
            text += f" … (+{len(shown) - used})"
            break
        text, used = candidate, used + 1
    name = f"{Path(config_path).name} {text}".strip()
    if n_jobs is not None:
        name += f" · {n_jobs} job{'s' if n_jobs != 1 else ''}"
    return name


def write_plan_json(plan: Plan, path: str | Path, nodes: dict | None = None) -> None:
    """Write the plan atomically: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(plan.to_json(nodes), indent=2) + "\n")
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write plan JSON {path}: {err.strerror}") from None


NO_DATA = "skipped (no data yet)"


def no_data_warning(what: str, why: str) -> str:
    """The warning for a job left out because its data is not there (yet)."""
    return f"{what}: {why}, {NO_DATA}"


def resolve_groups(
    config: Config, inputs: list[str], combine: bool = False, combine_obs_ids: bool = False, cwd: str | None = None,
    *, find_chunks: FindChunks,
) -> tuple[list[Group], list[str]]:
    """Command-line inputs (MS paths, or obs_id patterns with a data handler) → groups, warnings.

    ``find_chunks``: which time chunks / LST bins are on disk (a fact handed in)."""
    cwd = cwd or os.getcwd()
    if not inputs:
        raise InputError("no Measurement Set or obs_id pattern given")
    warnings = list(config.warnings)
    if config.data_handler is None:
        if combine_obs_ids:
            warnings.append("--combine_obs_ids has no effect without a [data_handler] section")
        paths = []
        for arg in inputs:
            if not arg.strip():
                raise InputError("empty Measurement Set path on the command line")
            paths.append(ResolvedMS(os.path.normpath(os.path.join(cwd, os.path.expanduser(arg)))))
        return group_paths(paths, combine), warnings
    dh = load_data_handler(config.data_handler.config_file)
    selections = dh.select(inputs, config.data_handler.data_level, find_chunks)
    for sel in selections:
        if not sel.ms:
            warnings.append(no_data_warning(f"{sel.obs_id} {sel.sw}", "no Measurement Set"))
    selections = [s for s in selections if s.ms]
    if combine_obs_ids and not combine:
        warnings.append("--combine_obs_ids has no effect without --combine")
    return group_selections(selections, combine, combine_obs_ids and combine, dh.sw_order), warnings


def _group_name(group: Group) -> str:
    """``SW01 20231201_NT04``: a group as a no-data warning names it."""
    return " ".join(x for x in (group.sw, group.obs_id or obs_id_of([m.obs_id for m in group.ms])) if x)


def _temp_parent(config: Config, options: dict, values: dict[str, str], cwd: str) -> str | None:
    """The folder that holds the jobs' scratch folders: ``[wsclean] temp-dir`` if set (it
    wins, as it always did), else ``[worker] temp_dir``; None: WSClean's reorder files go
    beside each MS, named after its full path."""
    if TEMP_DIR in options:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(str(options[TEMP_DIR]))))
    if config.worker.temp_dir:
        return expand_tokens(config.worker.temp_dir, values)
    return None


def _hosts(config: Config, groups: list[Group]) -> list[str | None]:
    """Pinned host (run_on_file_host), the only node, or None: any node of the pool.

    Pool jobs get their node when they start (the first node with a free slot), not
    here: jobs of uneven length would otherwise queue behind a busy node.
    """
    worker = config.worker
    pattern = worker.run_on_file_host_pattern
    regex = compile_file_host_pattern(pattern, config.path) if worker.run_on_file_host and pattern else None
    hosts: list[str | None] = []
    for group in groups:
        match = regex.search(group.ms[-1].path) if regex is not None else None
        if match is not None and match.group(1):
            hosts.append(match.group(1))
        else:
            hosts.append(worker.nodes[0] if len(worker.nodes) == 1 else None)
    return hosts


def build_plan(
    config: Config,
    inputs: list[str],
    combine: bool = False,
    combine_obs_ids: bool = False,
    cwd: str | None = None,
    *,
    known_options: KnownOptions,
    count_channels: CountChannels,
    find_chunks: FindChunks,
    columns_among: ColumnsAmong | None = None,
) -> Plan:
    """Resolve the inputs and decide every job, in submission order.

    ``known_options`` and ``count_channels`` are facts of the world, handed in
    (:mod:`imgpipe.prepare` passes the real readers) so that planning stays pure.
    """
    groups, warnings = resolve_groups(config, inputs, combine, combine_obs_ids, cwd, find_chunks=find_chunks)
    return plan_jobs(config, groups, warnings, cwd, known_options=known_options, count_channels=count_channels,
                     columns_among=columns_among)


def plan_jobs(
    config: Config,
    groups: list[Group],
    warnings: list[str] | tuple[str, ...] = (),
    cwd: str | None = None,
    *,
    known_options: KnownOptions,
    count_channels: CountChannels,
    columns_among: ColumnsAmong | None = None,
) -> Plan:
    """Groups → jobs: host, WSClean argv, output directory; checks option names and MSs.
    ``columns_among``: reads which columns an MS has (None: not checked here)."""
    cwd = cwd or os.getcwd()
    where = str(config.path)
    has_dh = config.data_handler is not None
    options = dict(config.options)
    warnings = list(warnings)
    hosts = _hosts(config, groups)
    strangers = sorted({h for h in hosts if h is not None and h not in config.worker.nodes})
    if strangers:
        n = sum(h in strangers for h in hosts)
        warnings.append(
            f"{n} job(s) pinned by run_on_file_host to {', '.join(strangers)}, not in [worker] nodes "
            f"({','.join(config.worker.nodes)}): they run there anyway (check run_on_file_host_pattern)"
        )

    # MSs are checked here when this machine sees them: local jobs, SLURM (shared
    # filesystem) and a temporary Dask cluster on this machine
    def here(host: str) -> bool:
        return config.prefect.local_dask if config.prefect.dask else not is_ssh(host)

    pool_local = all(here(n) for n in config.worker.nodes)
    runs_here = [here(h) if h else pool_local for h in hosts]
    any_local = any(runs_here) or not groups
    try:
        known = known_options(config.worker.wsclean)
    except WSCleanNotFound:
        if any_local:
            raise
        known = None
        warnings.append(f"{config.worker.wsclean[0]} is not installed here: WSClean option names not checked")
    else:
        if known is None:
            warnings.append(f"WSClean option names not checked: a dry run does not run the config's [worker] wsclean "
                            f"({' '.join(config.worker.wsclean)}); the run checks them before any job starts")
    if known is not None:
        check_option_names([k for k, _ in config.options], known, where)

    prefix = config.worker.wsclean
    # an MPI job spans nodes: WSClean's defaults there (its ranks' threads are mpirun's business)
    worker = config.worker
    ask = None if config.nodes_mpi else ask_for(config.options, worker.job_category(), worker.auto_resources)
    if config.nodes_mpi:
        prefix = tuple(mpirun_prefix(config.mpi, config.nodes_mpi))
    jobs = []
    for group, host, check_ms in zip(groups, hosts, runs_here, strict=True):
        ms_paths = [m.path for m in group.ms]
        missing = [path for path in ms_paths if check_ms and not os.path.isdir(path)]
        if missing and has_dh:  # a night's MS not (yet) there: the others are still imaged
            what = _group_name(group)
            warnings.append(no_data_warning(what, f"Measurement Set {missing[0]} not found"))
            continue
        if missing:
            raise InputError(f"Measurement Set not found: {missing[0]} (no [data_handler] section: arguments are MS paths)")
        # the column WSClean reads, for the jobs of this machine (a job's own node checks its
        # MSs just before WSClean starts: imgpipe/backends/scripts/job_wrapper.sh)
        column = options.get(DATA_COLUMN)  # (false: the key dropped)
        lacking = _no_column(column, ms_paths, columns_among) if check_ms and isinstance(column, str) else None
        if lacking and has_dh:  # calibration has not written it (yet): the others are still imaged
            warnings.append(no_data_warning(_group_name(group), lacking))
            continue
        if lacking:
            given = " (nenucal's default)" if DATA_COLUMN in config.defaults_used else ""
            raise InputError(f"{where}: [wsclean] {DATA_COLUMN} = {options[DATA_COLUMN]!r}{given}: {lacking}; "
                             "set data-column to a column the MSs have")
        last = group.ms[-1]
        values = token_values(last.path, None, obs_id_of([m.obs_id for m in group.ms]), last.sw)
        name = expand_tokens(config.name, values)
        values["name"] = name
        out_dir = os.path.normpath(os.path.join(cwd, os.path.expanduser(expand_tokens(config.out_dir, values))))
        n_chan = None
        if CHANNELS_OUT in options:
            counted = not isinstance(options[CHANNELS_OUT], int)
            unseen = [path for path in ms_paths if counted and not os.path.isdir(path)]
            if unseen and has_dh:  # (a job on another node: missing there too, or not visible here)
                what = _group_name(group)
                warnings.append(no_data_warning(what, f"Measurement Set {unseen[0]} not found from this machine "
                                                      f"(channels-out = {options[CHANNELS_OUT]!r} counts its channels here)"))
                continue
            n_chan = resolve_channels_out(options[CHANNELS_OUT], ms_paths, count_channels)
        scratch: str | None = None
        links: tuple[tuple[str, str], ...] = ()
        parent = _temp_parent(config, options, values, cwd)
        if parent:
            scratch = scratch_dir(parent, f"{out_dir}/{name}", name)
            links = ms_links(scratch, ms_paths)
        linked = {ms: link for link, ms in links}
        argv = build_argv(prefix, f"{out_dir}/{name}", config.options, [linked.get(p, p) for p in ms_paths],
                          n_chan, scratch)
        job_ask = ask if ask is None or ask.category is not None else replace(ask, image_mib=image_mib(options, n_chan))
        job = Job(host, tuple(argv), tuple(ms_paths), group.obs_id, group.sw, out_dir, name, scratch, job_ask,
                  ms_links=links)
        jobs.append(with_category(job))

    seen: dict[str, Job] = {}
    for job in jobs:
        key = job.image_prefix  # a shared filesystem makes hosts irrelevant here
        if key in seen:
            raise InputError(
                f"two jobs would write the same images {job.image_prefix} ({seen[key].label} and {job.label}): "
                "use $ms_basename$, $obs_id$ or $sw$ in out-dir or name"
            )
        seen[key] = job
    plan = Plan(tuple(jobs), tuple(warnings), tuple(config.worker.nodes), output_root(config.out_dir, cwd))
    return plan.shares_left((), worker.max_concurrent)
