"""Benchmark 13, MPI: one job as a real wsclean-mp over two loopback sshd nodes against one
plain WSClean process, same options, same visibilities.

Why: whether ``--nodes_mpi`` pays for itself is a question of wall time per job. Here both
"nodes" share this machine's cores, so the figure says what MPI's own cost is (launch over
SSH, the master sending channels to workers), not the speed-up of real separate nodes.
The job: a simulated MS of 24 antennas × 240 times × 8 channels, 1024², -channels-out 8,
joined-channel cleaning; the plain run with -j 2 (every core) and -j 1 (a rank's share).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

OPTIONS = ["-size", "1024", "1024", "-scale", "0.5amin", "-niter", "3000", "-mgain", "0.8", "-auto-threshold", "3",
           "-channels-out", "8", "-join-channels", "-no-update-model-required"]


def wall_s(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:12])} ... failed: {(res.stdout + res.stderr)[-2000:]}")
    return time.perf_counter() - t0


def bench_mpi(tmp: Path) -> dict:
    from imgpipe.demo.simulate import PointSource, make_ms

    from support.mpi_loopback import WSCLEAN_MP, loopback_mca
    from support.sshd_nodes import SSHNodes, sshd_available

    if not os.access(WSCLEAN_MP, os.X_OK):
        return {"skipped": f"no wsclean-mp at {WSCLEAN_MP} (make wsclean-mp builds it)"}
    if not sshd_available() or shutil.which("mpirun") is None:
        return {"skipped": "openssh-server or mpirun is not installed"}
    ms = tmp / "SB.MS"
    make_ms(str(ms), [PointSource(151.0, 50.3, 10.0)], 150.0, 50.0, [60e6 + i * 0.2e6 for i in range(8)],
            n_ant=24, n_time=240, seed=5)
    (tmp / "nodes").mkdir()
    nodes = SSHNodes(tmp / "nodes", 2)
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    mpirun = ["mpirun", *root, "-host", "node101,node102", "-np", "2", *loopback_mca(nodes.ssh_config), "-x", "PATH"]
    out = {"ms": "24 antennas, 240 times, 8 channels", "options": " ".join(OPTIONS)}
    try:
        wall_s(["wsclean", "-name", str(tmp / "warm"), *OPTIONS, str(ms)], tmp)  # page cache, FFTW's first plans
        out["plain_j2_s"] = wall_s(["wsclean", "-name", str(tmp / "plain2"), "-j", "2", *OPTIONS, str(ms)], tmp)
        out["plain_j1_s"] = wall_s(["wsclean", "-name", str(tmp / "plain1"), "-j", "1", *OPTIONS, str(ms)], tmp)
        # mpirun runs on node101 as imgpipe starts it there: over SSH
        command = shlex.join([*mpirun, str(WSCLEAN_MP), "-name", str(tmp / "mpi"), "-j", "1", *OPTIONS, str(ms)])
        out["mpi_2x1_s"] = wall_s(["ssh", "-F", str(nodes.ssh_config), "node101", command], tmp)
    finally:
        nodes.stop()
    out["mpi_per_plain_j2"] = out["mpi_2x1_s"] / out["plain_j2_s"]
    out["mpi_per_plain_j1"] = out["mpi_2x1_s"] / out["plain_j1_s"]
    return out

