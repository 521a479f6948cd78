"""Who listens on a TCP port of this machine, and on which address: from the kernel's
tables (``/proc/net/tcp``, ``/proc/net/tcp6``), as ``ss -ltnp`` shows it.

Why: a Prefect server set by ``PREFECT_API_URL`` may give a run the head start
(:mod:`imgpipe.cli.head_start`) only if no machine but this one reaches it; its command
line may not say where it listens (``PREFECT_SERVER_API_HOST`` in its profile), its
bound socket does. The owner is looked for among this user's processes only (another
user's file descriptors cannot be read): a server of another user, or in a container,
has none here.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

LISTEN = "0A"
"""The kernel's code for a socket in the LISTEN state."""


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as the kernel writes it: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def is_loopback(host) -> bool:
    """Is ``host`` (a name, an address or its text) this machine's loopback, which only
    this machine's programs reach: ``localhost``, 127.0.0.0/8, ::1, or an IPv4 loopback
    address mapped into IPv6?"""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host) if isinstance(host, str) else host
    except ValueError:
        return False  # another name (or none): it may resolve anywhere
    if address is None:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def listening(port: int, net: Path = Path("/proc/net")) -> list[tuple[object, int, int]]:
    """The sockets listening on ``port``: (address, owner's uid, inode) each; [] if none
    (or if the tables cannot be read)."""
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            addr, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port:
                found.append((_address(addr), int(fields[7]), int(fields[9])))
    return found


def owners(inode: int, proc: Path = Path("/proc")) -> list[int]:
    """The pids of this user's processes that hold socket ``inode`` (forked workers share it)."""
    target = f"socket:[{inode}]"
    pids = []
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    pids.append(int(entry.name))
                    break
            except OSError:
                continue
    return pids
