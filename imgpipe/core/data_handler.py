"""Data handler: turn obs_id patterns into Measurement Set paths.

Same file format as nenucal's ``data_handler.toml``, so observatories keep theirs::

    [data_level_path]
    L2 = '/net/%NODE%/data/L2/%YEAR%/%MONTH%'
    [spectral_windows]
    SW01 = [106, 145]          # inclusive subband range
    SW_ALL = ['SW01', 'SW02']  # composite: its members, in order
    [obs_ids]
    '20231201_NT04' = ['node101', 'node102']  # node of each non-composite SW, in order
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from imgpipe.core.errors import DataHandlerError
from imgpipe.core.toml_file import read_toml

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})")


@dataclass(frozen=True)
class ResolvedMS:
    """One Measurement Set found for an input, with where it came from."""

    path: str
    obs_id: str | None = None
    sw: str | None = None


@dataclass(frozen=True)
class Selection:
    """The MSs of one (obs_id, spectral window), in subband / member order."""

    obs_id: str
    sw: str
    ms: tuple[ResolvedMS, ...]


@dataclass(frozen=True)
class DataHandler:
    """A parsed data handler file."""

    path: Path
    levels: dict[str, str]
    """Data level → directory template."""
    ranges: dict[str, tuple[int, int]]
    """Simple spectral windows → inclusive subband range, in file order."""
    composites: dict[str, tuple[str, ...]]
    """Composite spectral windows → member windows, in file order."""
    obs_ids: dict[str, tuple[str, ...]]
    """obs_id → node of each simple spectral window."""
    sw_order: tuple[str, ...]
    """All spectral window names (simple and composite) in file order."""

    def directory(self, obs_id: str, sw: str, level: str) -> str:
        """Directory holding the MSs of a simple spectral window."""
        if level not in self.levels:
            raise DataHandlerError(
                f"{self.path}: data level {level!r} not in [data_level_path] (known: {', '.join(self.levels)})"
            )
        template = self.levels[level]
        node = self.obs_ids[obs_id][list(self.ranges).index(sw)]
        text = template.replace("%NODE%", node).replace("%OBS_ID%", obs_id)
        if "%YEAR%" in text or "%MONTH%" in text:
            date = _DATE.match(obs_id)
            if date is None:
                raise DataHandlerError(
                    f"{self.path}: obs_id {obs_id!r} does not start with YYYYMMDD, needed by %YEAR%/%MONTH% in {level} = {template!r}"
                )
            text = text.replace("%YEAR%", date.group(1)).replace("%MONTH%", date.group(2))
        if "%OBS_ID%" not in template:
            text = text.rstrip("/") + "/" + obs_id
        if not text.startswith("/"):
            text = str(self.path.parent / text)
        return text

    def ms_paths(self, obs_id: str, sw: str, level: str) -> tuple[ResolvedMS, ...]:
        """All MSs of (obs_id, sw) at ``level``; a composite window concatenates its members'."""
        members = self.composites.get(sw, (sw,))
        out = []
        for member in members:
            folder = self.directory(obs_id, member, level)
            if level.startswith("L1"):
                first, last = self.ranges[member]
                names = [f"SB{sb:03d}.MS" for sb in range(first, last + 1)]
            else:
                names = [f"{member}.MS"]
            out += [ResolvedMS(f"{folder}/{name}", obs_id, sw) for name in names]
        return tuple(out)

    def select(self, patterns: list[str], level: str) -> list[Selection]:
        """Resolve ``GLOB[,GLOB...][:SWGLOB]`` patterns, in data handler file order, without repeats."""
        wanted: set[tuple[str, str]] = set()
        for pattern in patterns:
            obs_part, has_sw, sw_glob = pattern.partition(":")
            obs_globs = [g.strip() for g in obs_part.split(",") if g.strip()]
            if not obs_globs:
                raise DataHandlerError(f"pattern {pattern!r}: no obs_id glob before ':'")
            obs = [o for o in self.obs_ids if any(fnmatch.fnmatchcase(o, g) for g in obs_globs)]
            if not obs:
                raise DataHandlerError(f"pattern {pattern!r} matches no obs_id in {self.path}")
            if has_sw:
                sws = [s for s in self.sw_order if fnmatch.fnmatchcase(s, sw_glob)]
                if not sws:
                    raise DataHandlerError(
                        f"pattern {pattern!r}: {sw_glob!r} matches no spectral window (known: {', '.join(self.sw_order)})"
                    )
            else:
                sws = list(self.ranges)
            wanted.update((o, s) for o in obs for s in sws)
        return [
            Selection(o, s, self.ms_paths(o, s, level))
            for o in self.obs_ids
            for s in self.sw_order
            if (o, s) in wanted
        ]


def _int_range(path: Path, name: str, value) -> tuple[int, int]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise DataHandlerError(
            f"{path}: [spectral_windows] {name} = {value!r}: expected [first, last] subbands with first <= last"
        )
    return value[0], value[1]


def load_data_handler(path: str | Path) -> DataHandler:
    """Read and check a data handler file; every problem is one line naming the file."""
    path = Path(path).absolute()
    data = read_toml(path, "data handler file", DataHandlerError)
    for section in ("data_level_path", "spectral_windows", "obs_ids"):
        if not isinstance(data.get(section), dict):
            raise DataHandlerError(f"{path}: missing section [{section}]")
    levels = {}
    for level, template in data["data_level_path"].items():
        if not isinstance(template, str) or not template:
            raise DataHandlerError(f"{path}: [data_level_path] {level} must be a directory template string")
        levels[level] = template
    ranges: dict[str, tuple[int, int]] = {}
    composites: dict[str, tuple[str, ...]] = {}
    for name, value in data["spectral_windows"].items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):  # [] = no member
            composites[name] = tuple(value)
        else:
            ranges[name] = _int_range(path, name, value)
    for name, members in composites.items():
        for member in members:
            if member not in ranges:
                raise DataHandlerError(
                    f"{path}: composite spectral window {name} lists {member!r}, which is not a [first, last] spectral window"
                )
    obs_ids = {}
    for obs_id, nodes in data["obs_ids"].items():
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise DataHandlerError(f"{path}: [obs_ids] {obs_id!r} must be a list of node names")
        if len(nodes) < len(ranges):
            raise DataHandlerError(
                f"{path}: [obs_ids] {obs_id!r} lists {len(nodes)} node(s) for {len(ranges)} spectral windows ({', '.join(ranges)})"
            )
        obs_ids[obs_id] = tuple(nodes)
    return DataHandler(path, levels, ranges, composites, obs_ids, tuple(data["spectral_windows"]))
