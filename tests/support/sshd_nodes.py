"""Real OpenSSH servers on 127.0.0.2, 127.0.0.3, ... standing for cluster nodes.

Each has its own sshd_config, host key, pid file and log in a temp dir, accepts one
generated user key, and sets ``IMGPIPE_NODE=<name>`` in the sessions it starts so a
test can tell on which node a command ran. An ssh_config names them node101, node102...
Nothing listens beyond loopback.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class Node:
    name: str
    address: str
    port: int
    folder: Path
    proc: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.folder / "sshd_config"

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"


class SSHNodes:
    """Several sshd processes; ``ssh_config`` and ``known_hosts`` to reach them."""

    def __init__(self, folder: Path, count: int, first: int = 101, prefixes: list[list[str]] | None = None):
        """``prefixes``: per node, an argv prefix sshd is started under (e.g. a memory cgroup's:
        the node's jobs, below its sshd, are then in that cgroup too)."""
        self.folder = folder
        self._prefixes = list(prefixes or [])
        self.user = getpass.getuser()
        self.key = folder / "id_ed25519"
        self.ssh_config = folder / "ssh_config"
        self.known_hosts = folder / "known_hosts"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imgpipe-test", "-f", str(self.key)], check=True)
        (folder / "authorized_keys").write_text((folder / "id_ed25519.pub").read_text())
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.nodes: list[Node] = []
        for i in range(count):
            name, address = f"node{first + i}", f"127.0.0.{2 + i}"
            node = Node(name, address, _free_port(address), folder / name)
            node.folder.mkdir()
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(node.folder / "host_key")], check=True)
            node.config.write_text(
                "\n".join(
                    [
                        f"ListenAddress {address}:{node.port}",
                        f"HostKey {node.folder / 'host_key'}",
                        f"PidFile {node.folder / 'sshd.pid'}",
                        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "UsePAM no",
                        "StrictModes no",
                        "PermitRootLogin prohibit-password",
                        "MaxStartups 100:30:200",
                        "MaxSessions 10",
                        f"SetEnv IMGPIPE_NODE={name}",
                        "LogLevel VERBOSE",
                        "",
                    ]
                )
            )
            self.nodes.append(node)
        self.write_known_hosts()
        self.ssh_config.write_text(
            "".join(
                f"Host {n.name}\n  HostName {n.address}\n  Port {n.port}\n  User {self.user}\n"
                f"  IdentityFile {self.key}\n  UserKnownHostsFile {self.known_hosts}\n"
                for n in self.nodes
            )
        )
        for node in self.nodes:
            self.start(node)

    def write_known_hosts(self) -> None:
        self.known_hosts.write_text(
            "".join(
                f"[{n.address}]:{n.port} " + " ".join((n.folder / "host_key.pub").read_text().split()[:2]) + "\n"
                for n in self.nodes
            )
        )

    def __getitem__(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: Node) -> None:
        log = open(node.log, "a")
        index = self.nodes.index(node)
        prefix = self._prefixes[index] if index < len(self._prefixes) else []
        node.proc = subprocess.Popen([*prefix, SSHD, "-D", "-e", "-f", str(node.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"sshd for {node.name} exited: {node.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((node.address, node.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {node.name} did not start listening")

    def kill(self, node: Node, sessions: bool = True) -> None:
        """Kill the node's sshd (and its session processes: the node's side of every connection)."""
        if node.proc is None:
            return
        victims = [p for p in descendants(node.proc.pid) if _is_sshd(p)] if sessions else []
        _kill_all([node.proc.pid, *victims])
        node.proc.wait()
        node.proc = None

    def stop(self) -> None:
        """Stop every sshd and everything they started."""
        for node in self.nodes:
            if node.proc is None:
                continue
            _kill_all([*reversed(descendants(node.proc.pid)), node.proc.pid])
            node.proc.wait()
            node.proc = None

    def jobs_on(self, node: Node) -> list[int]:
        """PIDs of processes below this node's sshd other than sshd itself (jobs still running there)."""
        if node.proc is None:
            return []
        return [p for p in descendants(node.proc.pid) if not _is_sshd(p)]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_sshd(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/comm").read().strip().startswith("sshd")
    except OSError:
        return False
