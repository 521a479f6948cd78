"""Node lists: ``'node[101-104,110],gpu1'`` → ``['node101', ..., 'node104', 'node110', 'gpu1']``.

Cluster nodes are numbered; SLURM-style ranges keep configs short and readable.
"""

from __future__ import annotations

import re

from imgpipe.core.errors import ConfigError

_ITEM = re.compile(r"([^,\[\]]*)(?:\[([^\]]*)\])?([^,\[\]]*)")
_PART = re.compile(r"^(\d+)(?:-(\d+))?$")

LOCALHOST = "localhost"
LOCAL_NAMES = frozenset({LOCALHOST, "127.0.0.1", "::1"})
SLURM = "slurm"
"""``nodes = 'slurm'``: every job goes through SLURM (``srun``) instead of a named node."""
DASK = "dask"
"""``nodes = 'dask'`` (with ``[prefect] task_runner = 'dask'``): Dask puts each job on a worker."""


def _expand_range(prefix: str, body: str, suffix: str, spec: str, what: str) -> list[str]:
    names = []
    for part in body.split(","):
        m = _PART.match(part.strip())
        if m is None or int(m.group(2) or m.group(1)) < int(m.group(1)):
            raise ConfigError(f"{what}: bad range [{body}] in {spec!r} (expected e.g. node[101-104])")
        first, last = m.group(1), m.group(2) or m.group(1)
        names += [f"{prefix}{n:0{len(first)}d}{suffix}" for n in range(int(first), int(last) + 1)]
    return names


def expand_nodes(spec: str, what: str = "[worker] nodes") -> list[str]:
    """Expand a comma list with ``prefix[a-b,c]`` ranges, keeping order and dropping repeats.

    ``what`` names the list in errors (``--nodes_mpi 'n[1-'``, by default ``[worker] nodes``).
    """
    nodes: list[str] = []
    pos = 0
    while pos <= len(spec):
        m = _ITEM.match(spec, pos)
        assert m is not None  # (the pattern matches the empty string)
        prefix, body, suffix = m.group(1).strip(), m.group(2), m.group(3).strip()
        end = m.end()
        if end < len(spec) and spec[end] != ",":
            raise ConfigError(f"{what}: cannot read {spec!r} near {spec[end:]!r}")
        names = [prefix + suffix] if body is None else _expand_range(prefix, body, suffix, spec, what)
        for name in names:
            if name and name not in nodes:
                nodes.append(name)
        pos = end + 1
    if not nodes:
        raise ConfigError(f"{what} is empty")
    for name in nodes:
        if any(c.isspace() for c in name) or name.startswith("-"):
            raise ConfigError(f"{what}: {name!r} is not a valid host name")
    return nodes


def is_local(host: str) -> bool:
    """True for hosts that run jobs as local processes (no SSH)."""
    return host in LOCAL_NAMES


def is_ssh(host: str) -> bool:
    """True for hosts reached over SSH (anything but localhost, ``slurm`` and ``dask``).

    (With ``task_runner = 'dask'`` named nodes are Dask workers' hosts, not SSH: the flow knows.)
    """
    return host not in LOCAL_NAMES and host not in (SLURM, DASK)
