"""``imgpipe CONFIG ... --check``: reach every node the plan uses, find WSClean there, run nothing.

What a new user wants before the first night: is every node reachable with my SSH
set-up, and does each find ``wsclean`` after the env_file? Each node gets one line;
nothing is written, no job starts, Prefect is not loaded.
"""

from __future__ import annotations

import shutil

from imgpipe.backends import RunBackends
from imgpipe.backends.probe import missing_commands
from imgpipe.core.errors import NodeError
from imgpipe.core.nodes import DASK, SLURM, is_ssh


def check_nodes(config, plan, backends: RunBackends) -> list[tuple[str, bool, str]]:
    """(node, ready?, what was found) for every node of ``plan``."""
    wsclean = (config.mpi.wsclean_mp if config.nodes_mpi else config.worker.wsclean)[0]
    hosts = plan.hosts()
    remote = [h for h in hosts if is_ssh(h)]
    unreachable = backends.ssh.reach(remote, retries=0) if remote else {}
    out = []
    for host in hosts:
        if host in unreachable:
            out.append((host, False, str(unreachable[host]).removeprefix(f"{host}: ")))
            continue
        if host in (SLURM, DASK):
            tool = "srun" if host == SLURM else "dask"
            found = shutil.which(tool) is not None
            out.append((host, found, f"{tool} {'found' if found else 'not found'} here (the jobs' nodes are not checked)"))
            continue
        try:
            missing = missing_commands(host, config.worker.env_file, [wsclean], backends.ssh if is_ssh(host) else None)
        except NodeError as err:
            out.append((host, False, str(err).removeprefix(f"{host}: ")))
            continue
        how = "reached over SSH, " if is_ssh(host) else ""
        after = " after the env_file" if config.worker.env_file else ""
        out.append((host, not missing, f"{how}{wsclean} {'not found' if missing else 'found'}{after}"))
    return out
