"""The imgpipe config file (TOML) as immutable, validated records.

Everything is checked here, once, before any job starts: a typo in a key found at
03:00 by a nightly run is a lost night. Sections: ``[worker]``, ``[data_handler]``
(optional) and ``[wsclean]`` (every key a WSClean option, in file order).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgpipe.core.errors import ConfigError
from imgpipe.core.job_order import LARGEST_FIRST, ORDERS
from imgpipe.core.nodes import DASK, SLURM, expand_nodes
from imgpipe.core.resources import HEAVY, Category, parse_resources
from imgpipe.core.schema import (
    ARGV,
    BOOLEAN,
    DURATION,
    INTEGER,
    NAMES,
    OPTIONAL_STRING,
    RESOURCES,
    SIZE,
    STRING,
    TABLE,
    key,
    parse_section,
)
from imgpipe.core.tokens import NAME_TOKENS, check_tokens
from imgpipe.core.toml_file import read_toml
from imgpipe.core.wsclean_argv import CHANNELS_OUT, check_channels_out

DEFAULT_OUT_DIR = "$ms_in$/images"
WSCLEAN_DEFAULTS = (("name", "img"), ("pol", "I"), ("weight", "briggs 0"), ("data-column", "CORRECTED_DATA"))
"""The ``[wsclean]`` keys of nenucal's template (``default_img_settings.toml``), applied
under every config as the original does: without them a migrated config would image with
WSClean's own defaults (uniform weighting, all polarisations: another image).
``key = false`` drops one."""
DEFAULT_FILE_HOST_PATTERN = r"\/net/(node\d{3})"

OptionValue = Any  # str | int | float | bool | list, as read from TOML


@dataclass(frozen=True)
class WorkerConfig:
    """Where and how WSClean jobs run (``[worker]``)."""

    nodes: tuple[str, ...] = key(
        ("localhost",), "comma list of hosts; ranges `node[101-104,110]` expand. `localhost` (or `127.0.0.1`) runs local processes, "
        "`slurm` (alone) sends every job through SLURM, `dask` (alone, with `[prefect] task_runner = 'dask'`) lets "
        "Dask place them; any other name is an SSH host. Jobs not pinned by `run_on_file_host` go to the first node "
        "with a free slot", STRING, shown="'localhost'")
    max_concurrent: int = key(
        4, "most WSClean jobs running at once on one node, also across imgpipe runs that share the nodes and the "
        "Prefect database", INTEGER, minimum=1)
    env_file: str | None = key(
        None, "file sourced by bash before each job (a leading `~/` is the home on the job's node); a failing "
        "`source` fails the job with the shell's message. `''` = not set", OPTIONAL_STRING, code=True)
    debug: bool = key(
        False, "more output: imgpipe's own decisions (which job starts where and when, slots held by other runs) "
        "on the terminal, as `imgpipe: debug:` lines", BOOLEAN)
    dry_run: bool = key(False, "as `--dry-run`: print the jobs, run nothing", BOOLEAN)
    run_on_file_host: bool = key(False, "run each job on the host read from its (last) MS path", BOOLEAN)
    run_on_file_host_pattern: str | None = key(
        DEFAULT_FILE_HOST_PATTERN, "regex searched in the MS path; its group 1 is the host. No match: the job goes "
        "to the `nodes` pool. A pattern without a group is an error; `''` = no pattern, no job is pinned (as in "
        "nenucal's template)", OPTIONAL_STRING)
    wsclean: tuple[str, ...] = key(
        ("wsclean",), "the WSClean executable, or a prefix such as `'singularity exec /img/wsclean.sif wsclean'` "
        "(split like a shell command line)", ARGV, code=True)
    ssh_config: str | None = key(
        None, "an ssh_config file read before `~/.ssh/config` (its values win); relative to the config file's "
        "folder; must exist", OPTIONAL_STRING, code=True)
    accept_new_host_keys: bool = key(
        False, "accept and remember (in known_hosts) the key of a node never seen before; a *changed* key is "
        "always refused", BOOLEAN)
    node_agent: bool = key(
        True, "SSH nodes: start jobs through one small `python3` process per node, started once per run (the "
        "login shell and `~/.bashrc` run once per node, not per job); `false`: one SSH session per job", BOOLEAN)
    retries: int = key(
        2, "extra attempts for a job whose WSClean never started because of a connection problem (or, with "
        "`retry_failed_jobs`, that failed); also for reaching each node at the start of a deployment run (from "
        "the command line: one quick retry)", INTEGER, minimum=0)
    retry_delay: float = key(10.0, "wait before each retry", DURATION, minimum=0, old_names=("retry_delay_seconds",))
    retry_failed_jobs: bool = key(
        False, "also retry jobs whose WSClean exited with an error (off: a bad option fails the same way twice)",
        BOOLEAN)
    skip_unreachable_nodes: bool = key(
        False, "a node unreachable at start is skipped (warning) instead of stopping the run; jobs pinned to it "
        "fail with the reason", BOOLEAN)
    host_cooldown: float = key(
        10.0, "after a connection failure a node gets no new job for this long, doubled for each failure in a row "
        "(at most 5 min; jobs that fail together while it cools down count once), while the other nodes go on",
        DURATION, minimum=0, old_names=("host_cooldown_s",))
    node_give_up: float = key(
        180.0, "a node whose connections have all failed for this long (from its first failure in a row) is given "
        "up for the run: it gets a last try then, and if that fails too its waiting jobs fail at once with the "
        "reason (the next run redoes them) and pool jobs go to the other nodes. What a dead node costs a night",
        DURATION, minimum=0)
    max_time: float | None = key(
        None, "longest a job may run; then SIGTERM to its process group on its node, SIGKILL after `kill_grace`; "
        "reported `TIMED-OUT`, never ok, not retried. With SLURM also `--time` (minutes, rounded up, plus the "
        "grace)", DURATION, minimum=1)
    kill_grace: float = key(
        30.0, "time between SIGTERM and SIGKILL when a job is stopped for `max_time` or a lost connection "
        "(Ctrl-C uses at most 10 s)", DURATION, minimum=0, old_names=("kill_grace_s",))
    slurm_options: tuple[str, ...] = key(
        (), "with `nodes = 'slurm'`: extra `srun` options, e.g. `'-p cpu -c 16 --mem=64G'`", ARGV)
    slurm_nodes: int | None = key(
        None, "with `nodes = 'slurm'`: run the jobs as steps of one allocation of this many nodes (`salloc "
        "--no-shell`, then `srun --jobid`), released at the end of the run; `0` = no allocation", INTEGER, minimum=0)
    order: str = key(
        LARGEST_FIRST, "which waiting job takes a freed slot: `'largest_first'` (the job whose MSs' main tables "
        "hold the most bytes, so the run ends on short jobs) or `'as_given'` (plan order). The plan, dry run and "
        "summary stay in plan order", STRING, choices=ORDERS)
    resources: tuple[Category, ...] = key(
        (), "resource categories (`[worker.resources]`, the original worker pool's format), e.g. "
        "`heavy = {cpus = 12, mem = '40GB'}`; GB = 1024 MB as in SLURM; categories not given keep their defaults "
        "(small 1/2GB, medium 4/8GB, high_mem 2/16GB, cpu 12/8GB, heavy 12/40GB), each capped at heavy's. WSClean "
        "jobs use `heavy` when this table has an entry (see `category`; an empty table, as in nenucal's template, is "
        "no table)", RESOURCES, shown="{}")
    category: str | None = key(
        None, "the category of `[worker.resources]` whose cores and memory each WSClean job is given. Unset: `heavy` "
        "when the config has a `[worker.resources]` table (as the original's WSClean jobs), else a fair share of "
        "the job's node: its cores // `max_concurrent` and its usable memory (RAM or cgroup limit, less 10 %, at "
        "least 1 GiB) / `max_concurrent` (fewer jobs left to run than `max_concurrent` split the node among them: a job imaged alone gets the whole node)",
        OPTIONAL_STRING)
    auto_resources: bool = key(
        True, "tell each WSClean job what it was given: `-j` and `-abs-mem` (unless `[wsclean]` sets `j`, `mem` or "
        "`abs-mem`), `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and `MKL_NUM_THREADS` in its environment (an "
        "`env_file` may override them), `--cpus-per-task` and `--mem` for `srun` (unless `slurm_options` has "
        "them). `false`: none of these (WSClean's defaults: every core, all the memory)", BOOLEAN)
    retry_oom: bool = key(
        False, "a job killed for lack of memory (see [cores and memory](resources.md)) is tried once more, alone on a "
        "node (this run starts nothing else there meanwhile; without a category it gets the whole node's share). "
        "Safe to retry: its process is known to be dead, unlike after a lost connection", BOOLEAN)
    temp_dir: str | None = key(
        None, "scratch folder on each job's node (tokens as in out-dir, e.g. `'/local/scratch/$obs_id$'`): each job "
        "gets `-temp-dir <temp_dir>/imgpipe-<name>-<hash>`, created just before it starts and removed when it ends "
        "(ok, failed, timed out or cancelled); folders left by a killed run are removed by the next job there. "
        "MSs of one job that share a base name (`SW01.MS` of several nights) are given to WSClean as links of "
        "names of their own in that folder (WSClean names its reorder files after the base name alone). "
        "A `temp-dir` in `[wsclean]` wins and is used in the same way. Unset, and no `temp-dir`: WSClean's "
        "reorder files beside each MS. `''` = not set", OPTIONAL_STRING)
    keep_partial_images: bool = key(
        False, "keep the images a job that did not end ok (cancelled, timed out, failed) had written (dirty, psf, "
        "...); off: they are removed "
        "(the job is redone by the next run, and a partial image is easily taken for a product). WSClean's "
        "temporary files (`*-tmp.fits`, reorder files) are always removed", BOOLEAN)
    temp_min_free: int = key(
        10240, "with `temp_dir` (or `[wsclean] temp-dir`): a job does not start (it fails, saying how much is free) when the scratch folder's "
        "file system has less free space than this; `0` = no check", SIZE, minimum=0, shown="'10GB'")

    def job_category(self) -> Category | None:
        """The category WSClean jobs use; None: a fair share of their node (see ``category``)."""
        name = self.category or (HEAVY if self.resources else None)
        if name is None:
            return None
        return next(c for c in self.resources or parse_resources({}) if c.name == name)


@dataclass(frozen=True)
class PrefectConfig:
    """How the flow runs its WSClean tasks (``[prefect]``)."""

    task_runner: str = key(
        "threads", "`'threads'`: imgpipe starts every job itself (local, SSH, SLURM); `'dask'`: jobs run on Dask "
        "workers", STRING, choices=("threads", "dask"))
    dask_address: str | None = key(
        None, "scheduler of an existing Dask cluster (`'tcp://host:8786'`); none: a temporary cluster "
        "(`cluster_class`)", OPTIONAL_STRING, code=True)
    cluster_class: str | None = key(
        None, "with `'dask'` and no `dask_address`: the cluster class to start, a dotted name such as "
        "`'dask_jobqueue.SLURMCluster'` (install `dask-jobqueue` yourself)", OPTIONAL_STRING,
        shown="'distributed.LocalCluster'", code=True)
    cluster_kwargs: tuple[tuple[str, Any], ...] = key(
        (), "keyword arguments of `cluster_class`, a TOML table (`[prefect.cluster_kwargs]`); LocalCluster's "
        "default: one worker with `max_concurrent` threads", TABLE, shown="{}", code=True)
    ms_locks: str = key(
        "machine", "how runs keep off each other's MSs (one WSClean per MS at a time): `'machine'`, every run started "
        "on this machine (a file lock per MS, no cost); `'server'`, also runs started on other machines against the "
        "same `prefect server` (a Prefect limit per MS: a few API calls per job, see bench/RESULTS.md)", STRING,
        choices=("machine", "server"))
    server: str = key(
        "embedded", "with no `PREFECT_API_URL`: `'embedded'`, a Prefect server of the run's own, started with it and "
        "stopped at its end; `'kept'`, a server that stays up between runs on 127.0.0.1:`PREFECT_SERVER_API_PORT` "
        "(4200), UI on, started by the first run that finds none (`prefect server stop` stops it): each later run "
        "starts its first WSClean seconds sooner", STRING, choices=("embedded", "kept"))

    @property
    def dask(self) -> bool:
        return self.task_runner == "dask"

    @property
    def local_dask(self) -> bool:
        """A temporary Dask cluster of processes on this machine (its workers see this machine's files)."""
        return self.dask and self.dask_address is None and self.cluster_class in (None, "distributed.LocalCluster")


@dataclass(frozen=True)
class MPIConfig:
    """How ``--nodes_mpi`` runs one distributed WSClean per job (``[mpi]``)."""

    mpirun: tuple[str, ...] = key(("mpirun",), "the MPI launcher, run on the first MPI node", ARGV, code=True)
    np_per_node: int = key(
        1, "MPI processes per node: `-np` is this times the number of nodes; above 1 the hosts carry slot counts "
        "(`-host n1:2,n2:2`)", INTEGER, minimum=1)
    extra_args: tuple[str, ...] = key(
        (), "more mpirun options, e.g. `'--bind-to none --mca btl_tcp_if_include ib0'` (as root Open MPI also "
        "wants `--allow-run-as-root`)", ARGV, code=True)
    wsclean_mp: tuple[str, ...] = key(
        ("wsclean-mp",), "the MPI build of WSClean (Debian's package has none), or a prefix such as "
        "`'singularity exec ws.sif wsclean-mp'`", ARGV, code=True)
    export_env: tuple[str, ...] = key(
        ("PATH", "LD_LIBRARY_PATH"), "variables passed to every rank with `-x`, as set after `env_file` was "
        "sourced on the first node; Open MPI warns about, and skips, an unset one", NAMES,
        shown="['PATH', 'LD_LIBRARY_PATH']")
    max_concurrent: int = key(
        1, "distributed jobs at once (each takes every MPI node); replaces `[worker] max_concurrent` for "
        "`--nodes_mpi` runs", INTEGER, minimum=1)


@dataclass(frozen=True)
class DataHandlerRef:
    """Which data handler file to use and at which data level (``[data_handler]``)."""

    config_file: Path = key(
        None, "the data handler TOML file (required), relative to the config file's folder", STRING,
        shown="(required)")
    data_level: str = key("L2", "data level whose MSs are imaged: a level of the data handler file (`[data_levels.L2]`, or `L2` in the older `[data_level_path]`)", STRING)


@dataclass(frozen=True)
class Config:
    """A whole, validated imgpipe config file."""

    path: Path
    """The config file itself (absolute)."""
    worker: WorkerConfig
    data_handler: DataHandlerRef | None
    name: str
    """WSClean image name (``-name`` is ``<out_dir>/<name>``)."""
    out_dir: str
    """Output directory template, with ``$token$`` placeholders."""
    options: tuple[tuple[str, OptionValue], ...] = field(default=())
    """The other ``[wsclean]`` keys, without leading dash, in file order."""
    prefect: PrefectConfig = PrefectConfig()
    mpi: MPIConfig = MPIConfig()
    nodes_mpi: tuple[str, ...] = ()
    """Set from ``--nodes_mpi`` (not the file): each job is one MPI WSClean over these nodes."""
    defaults_used: tuple[str, ...] = ()
    """The ``[wsclean]`` keys that come from :data:`WSCLEAN_DEFAULTS` (the config does not set them)."""
    warnings: tuple[str, ...] = ()
    """Said once per run (e.g. a data handler file found only relative to the working directory)."""
    files: tuple[Path, ...] = ()
    """The files its settings came from: the config, then its ``default_settings`` chain."""


_SECTIONS = ("worker", "data_handler", "wsclean", "prefect", "mpi")


def _values(section: str, cls: type, table: Any, path: Path) -> dict:
    try:
        return parse_section(section, cls, table, str(path))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def compile_file_host_pattern(pattern: str, path: Path | str = "config") -> re.Pattern:
    """Compile ``run_on_file_host_pattern``; it must have a group that captures the host."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"{path}: [worker] run_on_file_host_pattern {pattern!r} is not a valid regex: {err}") from None
    if regex.groups < 1:
        raise ConfigError(
            f"{path}: [worker] run_on_file_host_pattern {pattern!r} has no group: "
            "put the host part in parentheses, e.g. '/net/(node\\d{3})'"
        )
    return regex


def _parse_worker(table: dict, path: Path, prefect: PrefectConfig = PrefectConfig()) -> WorkerConfig:
    values = _values("worker", WorkerConfig, table, path)
    if "nodes" in values:
        try:
            values["nodes"] = tuple(expand_nodes(values["nodes"]))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    if values.get("wsclean") == ():
        raise ConfigError(f"{path}: [worker] wsclean is empty")
    if prefect.dask and "nodes" not in values:
        values["nodes"] = (DASK,)  # Dask places the jobs
    nodes = values.get("nodes", ())
    if DASK in nodes and (len(nodes) > 1 or not prefect.dask):
        raise ConfigError(
            f"{path}: [worker] nodes = {table.get('nodes')!r}: 'dask' stands alone and needs [prefect] task_runner = 'dask'"
        )
    if prefect.dask and SLURM in nodes:
        raise ConfigError(
            f"{path}: [worker] nodes = 'slurm' does not go with [prefect] task_runner = 'dask' "
            "(for SLURM through Dask use cluster_class = 'dask_jobqueue.SLURMCluster' and nodes = 'dask')"
        )
    if prefect.dask and nodes == (DASK,) and values.get("run_on_file_host"):
        raise ConfigError(
            f"{path}: [worker] run_on_file_host needs the nodes named (the hosts of the Dask workers), not nodes = 'dask'"
        )
    if SLURM in nodes and len(nodes) > 1:
        raise ConfigError(f"{path}: [worker] nodes = {table['nodes']!r}: 'slurm' stands alone (SLURM chooses the nodes)")
    if values.get("slurm_nodes") == 0:  # as in nenucal's template: no allocation
        values["slurm_nodes"] = None
    if (values.get("slurm_options") or values.get("slurm_nodes")) and nodes != (SLURM,):
        raise ConfigError(f"{path}: [worker] slurm_options and slurm_nodes need nodes = 'slurm'")
    if nodes == (SLURM,) and values.get("run_on_file_host"):
        raise ConfigError(
            f"{path}: [worker] run_on_file_host is not supported with nodes = 'slurm' "
            "(SLURM places the jobs; use slurm_options, e.g. '--nodelist=...')"
        )
    temp_dir = values.get("temp_dir")
    if temp_dir and not temp_dir.startswith(("/", "$ms_in$")):
        raise ConfigError(f"{path}: [worker] temp_dir = {temp_dir!r}: must be an absolute path (it is a folder on "
                          "each job's node), e.g. '/local/scratch'")
    if values.get("ssh_config"):
        ssh_config = Path(values["ssh_config"]).expanduser()
        values["ssh_config"] = str(ssh_config if ssh_config.is_absolute() else path.parent / ssh_config)
        if not Path(values["ssh_config"]).is_file():
            raise ConfigError(f"{path}: [worker] ssh_config = {table['ssh_config']!r}: no such file ({values['ssh_config']})")
    else:
        values.pop("ssh_config", None)
    pattern = values.get("run_on_file_host_pattern", DEFAULT_FILE_HOST_PATTERN)
    if pattern is not None:  # '' (nenucal's template): no job is pinned
        compile_file_host_pattern(pattern, path)
    if table.get("resources") == {}:  # nenucal's template has an empty table: no category then
        values.pop("resources", None)
    category = values.get("category")
    if category is not None:
        known = [c.name for c in values.get("resources") or parse_resources({})]
        if category not in known:
            raise ConfigError(f"{path}: [worker] category = {category!r}: no such category in [worker.resources] "
                              f"(known: {', '.join(known)})")
    return WorkerConfig(**values)


def _parse_prefect(table: Any, path: Path) -> PrefectConfig:
    values = _values("prefect", PrefectConfig, table, path)
    runner = values.get("task_runner", "threads")
    dask_keys = [k for k in ("dask_address", "cluster_class", "cluster_kwargs") if k in values]
    if dask_keys and runner != "dask":
        raise ConfigError(f"{path}: [prefect] {dask_keys[0]} needs task_runner = 'dask'")
    if "dask_address" in values and ("cluster_class" in values or "cluster_kwargs" in values):
        raise ConfigError(
            f"{path}: [prefect] dask_address (an existing cluster) and cluster_class/cluster_kwargs (a new one) exclude each other"
        )
    address = values.get("dask_address")
    if address is not None and not re.match(r"^([a-z]+://)?[^\s:/]+:\d+$", address):
        raise ConfigError(f"{path}: [prefect] dask_address = {address!r}: expected like 'tcp://host:8786'")
    if "cluster_class" in values and not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$", values["cluster_class"]):
        raise ConfigError(
            f"{path}: [prefect] cluster_class = {values['cluster_class']!r}: expected a dotted name like 'dask_jobqueue.SLURMCluster'"
        )
    return PrefectConfig(**values)


def _parse_mpi(table: Any, path: Path) -> MPIConfig:
    values = _values("mpi", MPIConfig, table, path)
    for name in ("mpirun", "wsclean_mp"):
        if values.get(name) == ():
            raise ConfigError(f"{path}: [mpi] {name} is empty")
    return MPIConfig(**values)


def _parse_data_handler(table: dict, path: Path, cwd: str | None) -> tuple[DataHandlerRef | None, list[str]]:
    """The data handler reference, or None when ``config_file`` is empty (nenucal's template)."""
    values = _values("data_handler", DataHandlerRef, table, path)
    if "config_file" not in values:
        raise ConfigError(f"{path}: [data_handler] needs config_file (the data handler TOML file)")
    if not values["config_file"]:
        return None, []
    given = Path(values["config_file"]).expanduser()
    warnings = []
    if given.is_absolute():
        values["config_file"] = given
    else:
        # read against the config's folder; nenucal read it against the working directory,
        # so a file found only there is still used, with a warning naming both
        beside = path.parent / given
        from_cwd = Path(cwd or os.getcwd()) / given
        values["config_file"] = beside
        if not beside.exists() and from_cwd.exists():
            values["config_file"] = from_cwd
            warnings.append(
                f"{path}: [data_handler] config_file = {str(given)!r} is not in the config's folder ({beside}); "
                f"using {from_cwd} (relative to the working directory, as nenucal did): make the path absolute"
            )
    return DataHandlerRef(**values), warnings


def _check_option_value(key: str, value: Any, path: Path) -> None:
    if isinstance(value, dict):
        raise ConfigError(f"{path}: [wsclean] {key} is a table; WSClean options take a string, number, boolean or array")
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) or not isinstance(item, (str, int, float)):
                raise ConfigError(f"{path}: [wsclean] {key}: array items must be strings or numbers, not {item!r}")
    elif not isinstance(value, (str, int, float, bool)):
        raise ConfigError(f"{path}: [wsclean] {key} = {value!r}: must be a string, number, boolean or array")
    if isinstance(value, str):
        try:
            shlex.split(value)
        except ValueError as err:
            raise ConfigError(f"{path}: [wsclean] {key} = {value!r}: {err}") from None


def _parse_wsclean(table: Any, path: Path) -> tuple[str, str, tuple]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: wsclean must be a section ([wsclean])")
    name = out_dir = None
    options: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for raw_key, value in table.items():
        key = raw_key.lstrip("-")
        if not key:
            raise ConfigError(f"{path}: [wsclean] has an empty key")
        if key in seen:
            raise ConfigError(f"{path}: [wsclean] {key} is given twice")
        seen.add(key)
        _check_option_value(key, value, path)
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}: [wsclean] name must be a non-empty string")
            if "/" in value:
                raise ConfigError(f"{path}: [wsclean] name = {value!r}: put directories in out-dir, not in name")
            name = value
        elif key == "out-dir":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{path}: [wsclean] out-dir must be a non-empty string")
            out_dir = value
        else:
            options.append((key, value))
    if name is None:
        raise ConfigError(f"{path}: [wsclean] needs name = '...' (the image name prefix)")
    return name, out_dir or DEFAULT_OUT_DIR, tuple(options)


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, tables merged key by key (libpipe's settings order: keys
    only in ``base``, then keys in both, then keys only in ``over``)."""
    merged = {k: v for k, v in base.items() if k not in over}
    for k, v in base.items():
        if k in over:
            merged[k] = _merge(v, over[k]) if isinstance(v, dict) and isinstance(over[k], dict) else over[k]
    merged.update((k, v) for k, v in over.items() if k not in base)
    return merged


def _read_chain(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, tuple[Path, ...]]:
    """The merged settings and the files they came from (the config first)."""
    if path in chain:
        loop = " → ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: default_settings makes a loop: {loop}")
    data = read_toml(path, "config file", ConfigError)
    base_name = data.pop("default_settings", "")
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: default_settings = {base_name!r}: must be the path of a config file")
    if not base_name:
        return data, (path,)
    base = Path(base_name).expanduser()
    base = base if base.is_absolute() else path.parent / base
    if not base.is_file():
        raise ConfigError(f"{path}: default_settings = {base_name!r}: no such file ({base})")
    under, files = _read_chain(base, (*chain, path))
    return _merge(under, data), (path, *files)


def _with_wsclean_defaults(table: Any, path: Path) -> tuple[dict, tuple[str, ...]]:
    """``[wsclean]`` over :data:`WSCLEAN_DEFAULTS`, keys without their dash; and which defaults applied."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: wsclean must be a section ([wsclean])")
    keys: dict[str, Any] = {}
    for raw, value in table.items():
        if raw.lstrip("-") in keys:
            raise ConfigError(f"{path}: [wsclean] {raw.lstrip('-')} is given twice")
        keys[raw.lstrip("-")] = value
    return _merge(dict(WSCLEAN_DEFAULTS), keys), tuple(k for k, _ in WSCLEAN_DEFAULTS if k not in keys)


def load_config(path: str | Path, cwd: str | None = None) -> Config:
    """Read and validate an imgpipe config file; raises :class:`ConfigError` with one clear line.

    ``cwd``: the working directory (a data handler file may be found relative to it).
    """
    path = Path(path).expanduser().absolute()
    data, files = _read_chain(path)
    for section in data:
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join('[' + s + ']' for s in _SECTIONS)})")
    prefect = _parse_prefect(data.get("prefect", {}), path)
    worker = _parse_worker(data.get("worker", {}), path, prefect)
    mpi = _parse_mpi(data.get("mpi", {}), path)
    data_handler: DataHandlerRef | None = None
    warnings: list[str] = []
    if "data_handler" in data:
        data_handler, warnings = _parse_data_handler(data["data_handler"], path, cwd)
    wsclean, defaults_used = _with_wsclean_defaults(data.get("wsclean", {}), path)
    name, out_dir, options = _parse_wsclean(wsclean, path)
    check_tokens(out_dir, "out-dir", data_handler is not None, str(path))
    check_tokens(name, "name", data_handler is not None, str(path), allowed=NAME_TOKENS)
    if worker.temp_dir:
        check_tokens(worker.temp_dir, "temp_dir", data_handler is not None, str(path), section="worker")
    for option, value in options:
        if option == CHANNELS_OUT:
            check_channels_out(value, str(path))
    return Config(
        path=path, worker=worker, data_handler=data_handler, name=name, out_dir=out_dir, options=options,
        prefect=prefect, mpi=mpi, defaults_used=defaults_used, warnings=tuple(warnings), files=files,
    )
