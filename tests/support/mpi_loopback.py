"""A real wsclean-mp over loopback sshd "nodes": where `make wsclean-mp` put it, and the
mpirun options two nodes on one machine need (for the test and benchmark 13 alike)."""

from __future__ import annotations

import os
from pathlib import Path

WSCLEAN_MP = Path(os.environ.get("IMGPIPE_WSCLEAN_MP", Path.home() / ".cache/imgpipe/wsclean-mp/bin/wsclean-mp"))
"""tools/build-wsclean-mp.sh's default result (IMGPIPE_WSCLEAN_MP: another build)."""


def loopback_mca(ssh_config: Path) -> list[str]:
    """mpirun's options for nodes named in ``ssh_config`` and all on this machine: its ssh
    agent reads that config, Open MPI talks over lo only, and ranks yield while they wait
    (two nodes sharing 2 cores: busy-polling ranks starve each other's gridding threads,
    WSClean's prediction 30 s instead of 0.7 s)."""
    return ["--mca", "plm_rsh_agent", f"ssh -F {ssh_config}", "--mca", "oob_tcp_if_include", "lo",
            "--mca", "btl_tcp_if_include", "lo", "--mca", "mpi_yield_when_idle", "1"]
