"""Resource categories (``[worker.resources]``): the CPUs and memory a kind of job may use.

The format of the original worker pool (libpipe 0.9), so an ``img.toml`` keeps its
table: ``heavy = {cpus = 12, mem = '40GB'}``; memory as ``40GB``, ``40G`` or ``512MB``,
GB being 1024 MB as in SLURM. Categories not given keep the pool's defaults, and every
category but ``heavy`` is capped at ``heavy``'s values. WSClean jobs are ``heavy``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imgpipe.core.errors import BadValue

DEFAULT_CATEGORIES = {
    "small": (1, "2GB"),
    "medium": (4, "8GB"),
    "high_mem": (2, "16GB"),
    "cpu": (12, "8GB"),
    "heavy": (12, "40GB"),
}
HEAVY = "heavy"

_MEM = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)


def size_mb(text: Any) -> int:
    """``'40GB'``, ``'40G'``, ``'512MB'``, ``1024`` (MB), ``0`` → MB; ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(text)
    m = _MEM.fullmatch(str(text))
    if not m:
        raise ValueError(text)
    unit = "KMGT".index((m.group(2) or "M").upper()) - 1
    return int(float(m.group(1)) * 1024**unit)


def mem_mb(text: Any) -> int:
    """A category's memory, as :func:`size_mb` but at least 1 MB."""
    return max(1, size_mb(text))


@dataclass(frozen=True)
class Category:
    name: str
    cpus: int
    mem_mb: int


def parse_resources(table: Any) -> tuple[Category, ...]:
    """``[worker.resources]`` → every category, defaults included; BadValue saying why not."""
    if not isinstance(table, dict):
        raise BadValue("must be a table of categories, e.g. heavy = {cpus = 12, mem = '40GB'}")
    merged = {name: {"cpus": cpus, "mem": mem} for name, (cpus, mem) in DEFAULT_CATEGORIES.items()}
    for name, value in table.items():
        if not isinstance(value, dict):
            raise BadValue(f"{name} = {value!r}: must be a table such as {{cpus = 12, mem = '40GB'}}")
        unknown = [k for k in value if k not in ("cpus", "mem")]
        if unknown:
            raise BadValue(f"{name}: unknown key {unknown[0]!r} (known: cpus, mem)")
        merged.setdefault(name, {}).update(value)
    resolved = {}
    for name, res in merged.items():
        if "cpus" not in res or "mem" not in res:
            raise BadValue(f"{name}: give cpus and mem")
        cpus = res["cpus"]
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise BadValue(f"{name}: cpus = {cpus!r}: must be an integer of at least 1")
        try:
            mem = mem_mb(res["mem"])
        except ValueError:
            raise BadValue(f"{name}: mem = {res['mem']!r}: expected a memory such as '40GB', '40G' or '512MB'") from None
        resolved[name] = (cpus, mem)
    heavy_cpus, heavy_mem = resolved[HEAVY]
    return tuple(
        Category(name, cpus, mem) if name == HEAVY else Category(name, min(cpus, heavy_cpus), min(mem, heavy_mem))
        for name, (cpus, mem) in resolved.items()
    )
