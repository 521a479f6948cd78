"""Data handler: turn obs_id patterns into Measurement Set paths.

The file format is nenucal's ``data_handler.toml`` (0.29.2), so observatories keep
theirs; levels in either of its formats (see :mod:`imgpipe.core.data_levels`)::

    [data_levels.L2]
    path = '/net/%NODE%/data/L2/%YEAR%/%MONTH%'
    [spectral_windows]
    SW01 = [106, 145]          # inclusive subband range
    SW_ALL = ['SW01', 'SW02']  # composite: its members, in order
    [obs_ids]
    '20231201_NT04' = ['node101', 'node102']  # node of each non-composite SW, in order
    [n2_obs_ids.20231201_N2]
    nodes = 'node[101-104]'                   # where its time chunks are
    n1_obs_ids = ['20231201_NT04', '20231202_NT04']

Sections imgpipe does not use (calibration paths, remote hosts, ``[worker]`` tables of
other nenucal commands, ...) are accepted and ignored; what it reads is checked.

Which MSs a level holds on disk (time chunks, LST bins) is a fact of the world: it is
handed in as ``find_chunks`` (:func:`imgpipe.facts.ms_files.find_chunks`), so this
module stays pure.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imgpipe.core.data_levels import Level, is_lst_layout, is_subband_level, parse_levels
from imgpipe.core.errors import ConfigError, DataHandlerError, NoData
from imgpipe.core.nodes import expand_nodes
from imgpipe.core.toml_file import read_toml

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})")

FindChunks = Callable[[str, str, bool], list[str]]
"""(directory, spectral window, LST layout?) → the time chunks (``<SW>_T###.MS``) and,
for a level of LST bins, the bins (``<SW>_LST###.MS``) found there, any order."""


def chunk_index(ms_path: str) -> int:
    """Index of a time chunk ``SW_T###.MS`` or an LST bin ``SW_LST###.MS``."""
    tail = os.path.basename(ms_path).rsplit("_", 1)[1]
    return int(re.sub(r"^(LST|T)", "", tail)[:3])


@dataclass(frozen=True)
class ResolvedMS:
    """One Measurement Set found for an input, with where it came from."""

    path: str
    obs_id: str | None = None
    sw: str | None = None


@dataclass(frozen=True)
class Selection:
    """The MSs of one (obs_id, spectral window), in subband / member / chunk order."""

    obs_id: str
    sw: str
    ms: tuple[ResolvedMS, ...]


@dataclass(frozen=True)
class N2ObsId:
    """An obs_id made of N1 obs_ids, its time chunks spread over ``nodes``."""

    nodes: tuple[str, ...]
    n1_obs_ids: tuple[str, ...]


@dataclass(frozen=True)
class DataHandler:
    """A parsed data handler file."""

    path: Path
    levels: dict[str, Level]
    ranges: dict[str, tuple[int, int]]
    """Simple spectral windows → inclusive subband range, in file order."""
    composites: dict[str, tuple[str, ...]]
    """Composite spectral windows → member windows, in file order."""
    obs_ids: dict[str, tuple[str, ...]]
    """N1 obs_id → node of each simple spectral window."""
    n2_obs_ids: dict[str, N2ObsId]
    sw_order: tuple[str, ...]
    """All spectral window names (simple and composite) in file order."""

    @property
    def all_obs_ids(self) -> list[str]:
        """N1 then N2 obs_ids, in file order: the order of plans."""
        return [*self.obs_ids, *self.n2_obs_ids]

    def _template(self, level: str) -> str:
        if level not in self.levels:
            raise DataHandlerError(f"{self.path}: data level {level!r} is not defined (known: {', '.join(self.levels)})")
        template = self.levels[level].path
        if template is None:
            raise DataHandlerError(f"{self.path}: data level {level!r} has no directory (no path)")
        return template

    def directory(self, obs_id: str, sw: str, level: str, node: str | None = None) -> str:
        """Directory holding the MSs of a simple spectral window (of ``node``'s, for an N2 obs_id)."""
        template = self._template(level)
        if node is None:
            node = self.obs_ids[obs_id][list(self.ranges).index(sw)]
        n1 = self.n2_obs_ids[obs_id].n1_obs_ids[0] if obs_id in self.n2_obs_ids else obs_id
        text = template.replace("%NODE%", node).replace("%OBS_ID%", obs_id).replace("%N1_OBS_ID%", n1)
        if "%YEAR%" in text or "%MONTH%" in text:
            date = _DATE.match(obs_id)
            if date is None:
                raise DataHandlerError(
                    f"{self.path}: obs_id {obs_id!r} does not start with YYYYMMDD, needed by %YEAR%/%MONTH% in {level} = {template!r}"
                )
            text = text.replace("%YEAR%", date.group(1)).replace("%MONTH%", date.group(2))
        if "%OBS_ID%" not in template and "%N1_OBS_ID%" not in template:
            text = text.rstrip("/") + "/" + obs_id
        if not text.startswith("/"):
            text = str(self.path.parent / text)
        return text

    def ms_paths(self, obs_id: str, sw: str, level: str, find_chunks: FindChunks) -> list[str]:
        """All MSs of (obs_id, sw) at ``level``, in the order they are imaged."""
        if obs_id in self.n2_obs_ids:
            n2 = self.n2_obs_ids[obs_id]
            if is_subband_level(self.levels, level):  # an N2 obs_id's subbands are its N1 obs_ids'
                return [ms for n1 in n2.n1_obs_ids for ms in self.ms_paths(n1, sw, level, find_chunks)]
            return self._chunks_of_nodes(obs_id, sw, level, find_chunks)
        out = []
        for member in self.composites.get(sw, (sw,)):
            folder = self.directory(obs_id, member, level)
            if is_subband_level(self.levels, level):
                first, last = self.ranges[member]
                out += [f"{folder}/SB{sb}.MS" for sb in range(first, last + 1)]
            elif is_lst_layout(self.levels, level):
                out += sorted(find_chunks(folder, member, True), key=chunk_index)
            else:
                out.append(f"{folder}/{member}.MS")
        return out

    def _chunks_of_nodes(self, obs_id: str, sw: str, level: str, find_chunks: FindChunks) -> list[str]:
        """The time chunks (or LST bins) of an N2 obs_id in its nodes' directories, by index
        (a composite window: each member's in turn); a directory shared by several nodes (no
        %NODE% in the path) is listed once."""
        lst = is_lst_layout(self.levels, level)
        out = []
        for member in self.composites.get(sw, (sw,)):
            found, seen = [], set()
            for node in self.n2_obs_ids[obs_id].nodes:
                folder = os.path.normpath(self.directory(obs_id, member, level, node))
                if folder not in seen:
                    seen.add(folder)
                    found += sorted(find_chunks(folder, member, lst))
            out += sorted(found, key=chunk_index)
        return out

    def select(self, patterns: list[str], level: str, find_chunks: FindChunks) -> list[Selection]:
        """Resolve ``GLOB[,GLOB...][:SWGLOB]`` patterns, in data handler file order, without repeats."""
        self._template(level)
        all_obs = self.all_obs_ids
        wanted: set[tuple[str, str]] = set()
        for pattern in patterns:
            obs_part, has_sw, sw_glob = pattern.partition(":")
            obs_globs = [g.strip() for g in obs_part.split(",") if g.strip()]
            if not obs_globs:
                raise DataHandlerError(f"pattern {pattern!r}: no obs_id glob before ':'")
            obs = [o for o in all_obs if any(fnmatch.fnmatchcase(o, g) for g in obs_globs)]
            if not obs:
                raise NoData(f"pattern {pattern!r} matches no obs_id in {self.path}")
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
            Selection(o, s, tuple(ResolvedMS(p, o, s) for p in self.ms_paths(o, s, level, find_chunks)))
            for o in all_obs
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


def _n2_nodes(path: Path, obs_id: str, nodes) -> tuple[str, ...]:
    """A list as given, or a string with ranges (``node[101-104]``), sorted as nenucal does."""
    where = f"[n2_obs_ids.{obs_id}] nodes"
    if isinstance(nodes, list) and nodes and all(isinstance(n, str) and n for n in nodes):
        return tuple(nodes)
    if isinstance(nodes, str):
        try:
            return tuple(sorted(expand_nodes(nodes, what=where)))
        except ConfigError as err:
            raise DataHandlerError(f"{path}: {err}") from None
    raise DataHandlerError(f"{path}: {where} = {nodes!r}: must be a list of node names or a string such as 'node[101-104]'")


def load_data_handler(path: str | Path) -> DataHandler:
    """Read and check a data handler file; every problem is one line naming the file."""
    path = Path(path).absolute()
    data = read_toml(path, "data handler file", DataHandlerError)
    for section in ("spectral_windows", "obs_ids"):
        if not isinstance(data.get(section), dict):
            raise DataHandlerError(f"{path}: missing section [{section}]")
    levels = parse_levels(path, data)
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
    n2_obs_ids = {}
    tables = data.get("n2_obs_ids", {})
    if not isinstance(tables, dict):
        raise DataHandlerError(f"{path}: n2_obs_ids must be a section ([n2_obs_ids.<ID>])")
    for obs_id, table in tables.items():
        if not isinstance(table, dict) or "nodes" not in table or "n1_obs_ids" not in table:
            raise DataHandlerError(f"{path}: [n2_obs_ids.{obs_id}] needs nodes and n1_obs_ids")
        n1 = table["n1_obs_ids"]
        if not isinstance(n1, list) or not n1 or not all(isinstance(o, str) for o in n1):
            raise DataHandlerError(f"{path}: [n2_obs_ids.{obs_id}] n1_obs_ids must be a list of obs_ids")
        unknown = [o for o in n1 if o not in obs_ids]
        if unknown:
            raise DataHandlerError(f"{path}: [n2_obs_ids.{obs_id}] n1_obs_ids: {unknown[0]!r} is not in [obs_ids]")
        if obs_id in obs_ids:
            raise DataHandlerError(f"{path}: {obs_id!r} is both in [obs_ids] and in [n2_obs_ids]")
        n2_obs_ids[obs_id] = N2ObsId(_n2_nodes(path, obs_id, table["nodes"]), tuple(n1))
    return DataHandler(path, levels, ranges, composites, obs_ids, n2_obs_ids, tuple(data["spectral_windows"]))
