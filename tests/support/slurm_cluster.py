"""A real single-node SLURM (Debian slurm-wlm + munge) on this machine, for the tests.

Follows ../shared/notes/slurm-single-node.md: munged started as the munge user, a
private slurm.conf (SLURM_CONF) in a temp dir with the node named after
``hostname -s``, no cgroups (proctrack/linuxproc, task/none), free ports, 2 CPUs and
4 GiB; memory is counted (CR_Core_Memory), 1 GiB per CPU unless a job asks, as on most clusters.
Everything it starts is stopped at the end (munged too, when it started it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def slurm_available() -> str | None:
    """None if SLURM can be started here, else why not."""
    for tool in ("slurmctld", "slurmd", "srun", "sinfo", "scancel", "munged"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (make test installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "starting slurmd needs root (it runs jobs as their users)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"


class SlurmCluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._munged_started = False
        self._procs: list[subprocess.Popen] = []
        for sub in ("state", "spool"):
            (folder / sub).mkdir()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=imgpipetest",
                    f"SlurmctldHost={self.host}",
                    "SlurmUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"StateSaveLocation={folder / 'state'}",
                    f"SlurmdSpoolDir={folder / 'spool'}",
                    f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                    f"SlurmdPidFile={folder / 'slurmd.pid'}",
                    f"SlurmctldLogFile={folder / 'slurmctld.log'}",
                    f"SlurmdLogFile={folder / 'slurmd.log'}",
                    "AuthType=auth/munge",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "DefMemPerCPU=1024",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "KillWait=5",
                    "InactiveLimit=0",
                    "MinJobAge=300",
                    f"NodeName={self.host} CPUs=2 RealMemory=4096 State=UNKNOWN",
                    f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._start_munge()
        self._procs.append(self._daemon("slurmctld"))
        time.sleep(0.5)
        self._procs.append(self._daemon("slurmd"))
        self._wait_idle()

    def _start_munge(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return
        for folder, mode in (("/etc/munge", 0o700), ("/var/log/munge", 0o700), ("/var/lib/munge", 0o700), ("/run/munge", 0o755)):
            os.makedirs(folder, exist_ok=True)
            shutil.chown(folder, "munge", "munge")
            os.chmod(folder, mode)
        if not os.path.exists("/etc/munge/munge.key"):
            subprocess.run(["/usr/sbin/mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", _sbin("munged")], check=True)
        self._munged_started = True

    def _daemon(self, name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.out", "w")
        return subprocess.Popen([_sbin(name), "-D"], env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            res = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            out = res.stdout + res.stderr
            if res.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM did not come up: {out}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(
            (self.folder / f).read_text()[-1500:] for f in ("slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out") if (self.folder / f).exists()
        )

    def queue(self) -> list[str]:
        """Job ids SLURM still has pending or running."""
        res = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self.env, capture_output=True, text=True)
        return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", str(os.getuid())], env=self.env, capture_output=True)
        for proc in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._munged_started:
            subprocess.run(["pkill", "-x", "munged"], capture_output=True)
