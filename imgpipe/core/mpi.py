"""``--nodes_mpi``: each job as one distributed WSClean (``wsclean-mp``) started by mpirun.

Why a config transformation rather than a new backend: a distributed job is still one
command started on one node (the first MPI node), under the same wrapper, with the
same log, accounting and stop rules; only its argv prefix and where it starts differ.

    mpirun -host n1,n2 -np 2 -x PATH -x LD_LIBRARY_PATH [extra_args] wsclean-mp <options> <MSs>

With ``np_per_node`` > 1 the hosts carry slot counts (``-host n1:2,n2:2``), Open MPI's
form. Each job takes every MPI node, so only ``[mpi] max_concurrent`` (default 1) of
them run at once.
"""

from __future__ import annotations

from dataclasses import replace

from imgpipe.core.config import Config, MPIConfig
from imgpipe.core.errors import ConfigError
from imgpipe.core.nodes import DASK, SLURM, expand_nodes

WSCLEAN_MP_HELP = (
    "Debian's wsclean package has no MPI build: build one from Debian's source with "
    "`make wsclean-mp` in imgpipe's repository (or WSClean's cmake with libopenmpi-dev installed) "
    "on every MPI node, and point [mpi] wsclean_mp at it"
)


def parse_nodes_mpi(spec: str) -> tuple[str, ...]:
    """``'node1,node2'`` or ``'node[1-4]'`` → node names; ConfigError when it cannot be used."""
    nodes = tuple(expand_nodes(spec, what=f"--nodes_mpi {spec!r}"))
    for special in (SLURM, DASK):
        if special in nodes:
            raise ConfigError(f"--nodes_mpi {spec!r}: {special!r} is not a node name (give the MPI nodes by name)")
    return nodes


def mpirun_prefix(mpi: MPIConfig, nodes: tuple[str, ...] | list[str]) -> list[str]:
    """The argv in front of WSClean's options: mpirun, its options, then wsclean-mp."""
    hosts = ",".join(n if mpi.np_per_node == 1 else f"{n}:{mpi.np_per_node}" for n in nodes)
    argv = [*mpi.mpirun, "-host", hosts, "-np", str(mpi.np_per_node * len(nodes))]
    for name in mpi.export_env:
        argv += ["-x", name]
    return argv + [*mpi.extra_args, *mpi.wsclean_mp]


def distributed(config: Config, nodes: tuple[str, ...]) -> Config:
    """The config as ``--nodes_mpi nodes`` runs it: every job on the first node, ``[mpi] max_concurrent`` at once."""
    if not nodes:
        raise ConfigError("--nodes_mpi: no node given")
    if config.prefect.dask:
        raise ConfigError(
            f"{config.path}: --nodes_mpi does not go with [prefect] task_runner = 'dask' (mpirun starts the processes)"
        )
    worker = replace(config.worker, nodes=(nodes[0],), run_on_file_host=False, max_concurrent=config.mpi.max_concurrent)
    return replace(config, worker=worker, nodes_mpi=tuple(nodes))
