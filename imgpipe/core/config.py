"""The imgpipe config file (TOML) as immutable, validated records.

Everything is checked here, once, before any job starts: a typo in a key found at
03:00 by a nightly run is a lost night. Sections: ``[worker]``, ``[data_handler]``
(optional) and ``[wsclean]`` (every key a WSClean option, in file order).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgpipe.core.errors import ConfigError
from imgpipe.core.job_order import LARGEST_FIRST, ORDERS
from imgpipe.core.nodes import DASK, SLURM, expand_nodes
from imgpipe.core.tokens import NAME_TOKENS, check_tokens
from imgpipe.core.toml_file import read_toml
from imgpipe.core.wsclean_argv import CHANNELS_OUT, check_channels_out

DEFAULT_OUT_DIR = "$ms_in$/images"
DEFAULT_FILE_HOST_PATTERN = r"\/net/(node\d{3})"

OptionValue = Any  # str | int | float | bool | list, as read from TOML


@dataclass(frozen=True)
class WorkerConfig:
    """Where and how WSClean jobs run (``[worker]``)."""

    nodes: tuple[str, ...] = ("localhost",)
    """Hosts that run jobs; ``localhost`` runs local processes, others go over SSH."""
    max_concurrent: int = 4
    """Maximum number of WSClean jobs running at once on one node."""
    env_file: str | None = None
    """Shell file sourced (bash) before each job, e.g. to load a module or a venv."""
    dry_run: bool = False
    """Print the commands instead of running them."""
    run_on_file_host: bool = False
    """Run each job on the node that holds its (last) MS, read from the MS path."""
    run_on_file_host_pattern: str = DEFAULT_FILE_HOST_PATTERN
    """Regex whose first group, searched in the MS path, is the host name."""
    wsclean: tuple[str, ...] = ("wsclean",)
    """WSClean executable, or a prefix such as ``singularity exec img.sif wsclean``."""
    ssh_config: str | None = None
    """Extra ssh_config file (absolute), read before ``~/.ssh/config``."""
    accept_new_host_keys: bool = False
    """Accept and remember the host key of a node not yet in known_hosts (a changed key is always refused)."""
    node_agent: bool = True
    """Start SSH jobs through one small python3 process per node (one login per node for the run) rather than one SSH session per job."""
    retries: int = 2
    """How often a job is tried again after a connection failure (or a WSClean failure with retry_failed_jobs)."""
    retry_delay_seconds: float = 10.0
    """Wait before each retry."""
    retry_failed_jobs: bool = False
    """Also retry jobs whose WSClean exited with an error (off: a bad option fails the same way twice)."""
    skip_unreachable_nodes: bool = False
    """Go on with the other nodes when a node cannot be reached at start."""
    host_cooldown_s: float = 10.0
    """After a connection failure, a node gets no new job for this long while another node can take it."""
    max_time: int | None = None
    """Seconds a job may run; then SIGTERM, SIGKILL after kill_grace_s, reported timed out (SLURM: --time)."""
    kill_grace_s: float = 30.0
    """Seconds between SIGTERM and SIGKILL when a job is stopped for max_time or a lost connection."""
    slurm_options: tuple[str, ...] = ()
    """Extra ``srun`` options for ``nodes = 'slurm'`` (e.g. ``-p cpu -c 16 --mem=64G``)."""
    slurm_nodes: int | None = None
    """With ``nodes = 'slurm'``: run the jobs as steps of one allocation of this many nodes."""
    order: str = LARGEST_FIRST
    """Which waiting job starts first when a slot frees: ``largest_first`` (by the bytes of its MSs, so the run ends on short jobs) or ``as_given`` (plan order)."""


@dataclass(frozen=True)
class PrefectConfig:
    """How the flow runs its WSClean tasks (``[prefect]``)."""

    task_runner: str = "threads"
    """``threads``: imgpipe starts every job itself (local, SSH, SLURM); ``dask``: jobs run on Dask workers."""
    dask_address: str | None = None
    """Scheduler of an existing Dask cluster (``tcp://host:8786``); none: a temporary cluster (``cluster_class``)."""
    cluster_class: str | None = None
    """Temporary cluster to start, e.g. ``dask_jobqueue.SLURMCluster`` (default ``distributed.LocalCluster``)."""
    cluster_kwargs: tuple[tuple[str, Any], ...] = ()
    """Keyword arguments of ``cluster_class`` (a TOML table), in file order."""

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

    mpirun: tuple[str, ...] = ("mpirun",)
    """The MPI launcher, run on the first node."""
    np_per_node: int = 1
    """MPI processes per node (``-np`` is this times the number of nodes)."""
    extra_args: tuple[str, ...] = ()
    """More mpirun options, e.g. ``--bind-to none`` or ``--mca btl_tcp_if_include eth0``."""
    wsclean_mp: tuple[str, ...] = ("wsclean-mp",)
    """The MPI build of WSClean (not in Debian's package: build WSClean with MPI)."""
    export_env: tuple[str, ...] = ("PATH", "LD_LIBRARY_PATH")
    """Variables mpirun passes to the other nodes (``-x``), after env_file was sourced on the first."""
    max_concurrent: int = 1
    """Distributed jobs running at once (each takes all the MPI nodes)."""


@dataclass(frozen=True)
class DataHandlerRef:
    """Which data handler file to use and at which data level (``[data_handler]``)."""

    config_file: Path
    """Data handler TOML file (absolute; relative paths are read against the config's folder)."""
    data_level: str = "L2"
    """Data level (a key of ``[data_level_path]``) whose MSs are imaged."""


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


_WORKER_KEYS = {
    "nodes": str,
    "max_concurrent": int,
    "env_file": str,
    "dry_run": bool,
    "run_on_file_host": bool,
    "run_on_file_host_pattern": str,
    "wsclean": str,
    "ssh_config": str,
    "accept_new_host_keys": bool,
    "node_agent": bool,
    "retries": int,
    "retry_delay_seconds": float,
    "retry_failed_jobs": bool,
    "skip_unreachable_nodes": bool,
    "host_cooldown_s": float,
    "max_time": (int, str),
    "kill_grace_s": float,
    "slurm_options": str,
    "slurm_nodes": int,
    "order": str,
}
_DATA_HANDLER_KEYS = {"config_file": str, "data_level": str}
_PREFECT_KEYS = {"task_runner": str, "dask_address": str, "cluster_class": str, "cluster_kwargs": dict}
_MPI_KEYS = {"mpirun": str, "np_per_node": int, "extra_args": str, "wsclean_mp": str, "export_env": list, "max_concurrent": int}
_SECTIONS = ("worker", "data_handler", "wsclean", "prefect", "mpi")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table", list: "an array"}


def _typed(section: str, table: dict, key: str, kind: type, path: Path) -> Any:
    value = table[key]
    if kind == (int, str):  # a duration: seconds, or '2h', '30m', '1h30m', '90s'
        try:
            return parse_duration(value)
        except ValueError:
            raise ConfigError(
                f"{path}: [{section}] {key} = {value!r}: must be seconds (a positive integer) or like '2h', '45m', '1h30m'"
            ) from None
    accepted = (int, float) if kind is float else kind
    ok = isinstance(value, accepted) and not (kind in (int, float) and isinstance(value, bool))
    if not ok:
        raise ConfigError(f"{path}: [{section}] {key} = {value!r}: must be {_TYPE_NAMES[kind]}")
    return float(value) if kind is float else value


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> int:
    """``7200``, ``'2h'``, ``'1h30m'``, ``'90s'``, ``'3600'`` → seconds (> 0); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str) and (m := _DURATION.match(value.strip().lower())) and any(m.groups()):
        h, mi, se = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + se
    else:
        raise ValueError(value)
    if seconds <= 0:
        raise ValueError(value)
    return seconds


def _check_keys(section: str, table: Any, allowed: dict, path: Path) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {section} must be a section ([{section}])")
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{path}: unknown key {key!r} in [{section}] (known: {', '.join(allowed)})"
            )


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
    _check_keys("worker", table, _WORKER_KEYS, path)
    values = {key: _typed("worker", table, key, kind, path) for key, kind in _WORKER_KEYS.items() if key in table}
    if "nodes" in values:
        try:
            values["nodes"] = tuple(expand_nodes(values["nodes"]))
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    if values.get("max_concurrent", 1) < 1:
        raise ConfigError(f"{path}: [worker] max_concurrent = {values['max_concurrent']}: must be at least 1")
    if "wsclean" in values:
        try:
            prefix = tuple(shlex.split(values["wsclean"]))
        except ValueError as err:
            raise ConfigError(f"{path}: [worker] wsclean = {values['wsclean']!r}: {err}") from None
        if not prefix:
            raise ConfigError(f"{path}: [worker] wsclean is empty")
        values["wsclean"] = prefix
    if values.get("env_file") == "":
        values["env_file"] = None
    if "slurm_options" in values:
        try:
            values["slurm_options"] = tuple(shlex.split(values["slurm_options"]))
        except ValueError as err:
            raise ConfigError(f"{path}: [worker] slurm_options = {table['slurm_options']!r}: {err}") from None
    if values.get("slurm_nodes", 1) < 1:
        raise ConfigError(f"{path}: [worker] slurm_nodes = {values['slurm_nodes']}: must be at least 1")
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
    if ("slurm_options" in table or "slurm_nodes" in table) and nodes != (SLURM,):
        raise ConfigError(f"{path}: [worker] slurm_options and slurm_nodes need nodes = 'slurm'")
    if nodes == (SLURM,) and values.get("run_on_file_host"):
        raise ConfigError(
            f"{path}: [worker] run_on_file_host is not supported with nodes = 'slurm' "
            "(SLURM places the jobs; use slurm_options, e.g. '--nodelist=...')"
        )
    if values.get("order", LARGEST_FIRST) not in ORDERS:
        raise ConfigError(f"{path}: [worker] order = {values['order']!r}: must be {' or '.join(map(repr, ORDERS))}")
    for key in ("retries", "retry_delay_seconds", "host_cooldown_s", "kill_grace_s"):
        if values.get(key, 0) < 0:
            raise ConfigError(f"{path}: [worker] {key} = {values[key]}: must not be negative")
    if values.get("ssh_config"):
        ssh_config = Path(values["ssh_config"]).expanduser()
        values["ssh_config"] = str(ssh_config if ssh_config.is_absolute() else path.parent / ssh_config)
        if not Path(values["ssh_config"]).is_file():
            raise ConfigError(f"{path}: [worker] ssh_config = {table['ssh_config']!r}: no such file ({values['ssh_config']})")
    else:
        values.pop("ssh_config", None)
    compile_file_host_pattern(values.get("run_on_file_host_pattern", DEFAULT_FILE_HOST_PATTERN), path)
    return WorkerConfig(**values)


def _split(section: str, key: str, value: str, path: Path) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value))
    except ValueError as err:
        raise ConfigError(f"{path}: [{section}] {key} = {value!r}: {err}") from None


def _parse_prefect(table: Any, path: Path) -> PrefectConfig:
    _check_keys("prefect", table, _PREFECT_KEYS, path)
    values = {key: _typed("prefect", table, key, kind, path) for key, kind in _PREFECT_KEYS.items() if key in table}
    runner = values.get("task_runner", "threads")
    if runner not in ("threads", "dask"):
        raise ConfigError(f"{path}: [prefect] task_runner = {runner!r}: must be 'threads' or 'dask'")
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
    if "cluster_kwargs" in values:
        values["cluster_kwargs"] = tuple(values["cluster_kwargs"].items())
    return PrefectConfig(**values)


def _parse_mpi(table: Any, path: Path) -> MPIConfig:
    _check_keys("mpi", table, _MPI_KEYS, path)
    values = {key: _typed("mpi", table, key, kind, path) for key, kind in _MPI_KEYS.items() if key in table}
    for key in ("mpirun", "wsclean_mp", "extra_args"):
        if key in values:
            values[key] = _split("mpi", key, values[key], path)
            if not values[key] and key != "extra_args":
                raise ConfigError(f"{path}: [mpi] {key} is empty")
    for key in ("np_per_node", "max_concurrent"):
        if values.get(key, 1) < 1:
            raise ConfigError(f"{path}: [mpi] {key} = {values[key]}: must be at least 1")
    if "export_env" in values:
        names = values["export_env"]
        bad = [n for n in names if not isinstance(n, str) or not re.match(r"^[A-Za-z_]\w*$", n)]
        if bad:
            raise ConfigError(f"{path}: [mpi] export_env: {bad[0]!r} is not an environment variable name")
        values["export_env"] = tuple(names)
    return MPIConfig(**values)


def _parse_data_handler(table: dict, path: Path) -> DataHandlerRef:
    _check_keys("data_handler", table, _DATA_HANDLER_KEYS, path)
    if "config_file" not in table:
        raise ConfigError(f"{path}: [data_handler] needs config_file (the data handler TOML file)")
    file_name = _typed("data_handler", table, "config_file", str, path)
    level = _typed("data_handler", table, "data_level", str, path) if "data_level" in table else "L2"
    dh_path = Path(file_name).expanduser()
    if not dh_path.is_absolute():
        dh_path = path.parent / dh_path
    return DataHandlerRef(config_file=dh_path, data_level=level)


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


def load_config(path: str | Path) -> Config:
    """Read and validate an imgpipe config file; raises :class:`ConfigError` with one clear line."""
    path = Path(path).expanduser().absolute()
    data = read_toml(path, "config file", ConfigError)
    for section in data:
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join('[' + s + ']' for s in _SECTIONS)})")
    if "wsclean" not in data:
        raise ConfigError(f"{path}: missing [wsclean] section (it needs at least name = '...')")
    prefect = _parse_prefect(data.get("prefect", {}), path)
    worker = _parse_worker(data.get("worker", {}), path, prefect)
    mpi = _parse_mpi(data.get("mpi", {}), path)
    data_handler = _parse_data_handler(data["data_handler"], path) if "data_handler" in data else None
    name, out_dir, options = _parse_wsclean(data["wsclean"], path)
    check_tokens(out_dir, "out-dir", data_handler is not None, str(path))
    check_tokens(name, "name", data_handler is not None, str(path), allowed=NAME_TOKENS)
    for key, value in options:
        if key == CHANNELS_OUT:
            check_channels_out(value, str(path))
    return Config(
        path=path, worker=worker, data_handler=data_handler, name=name, out_dir=out_dir, options=options,
        prefect=prefect, mpi=mpi,
    )
