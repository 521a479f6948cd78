"""Data levels of a data handler file: where each level's MSs are, and how they are named.

nenucal writes two formats, and imgpipe reads both (giving both is an error, as in
nenucal 0.29.2):

- the older ``[data_level_path]`` (a directory template per level), with
  ``[l1_to_l2_config]`` and ``[lst_binning]`` beside it;
- ``[data_levels.<NAME>]`` tables: ``path`` (required), ``input`` (the level it is made
  from), ``subbands``, ``lst``, ``split``, and processing keys imgpipe does not use
  (``parset``, ``bandpass``, ``avg_freq``, ...), accepted as they are.

How a level's MSs are named (what imgpipe needs of all this):

- a **subband level** (a level without ``input`` whose ``subbands`` is true, or, when
  ``subbands`` is absent, whose name starts with ``L1``, any case) holds ``SB<n>.MS``,
  ``n`` not padded, one per subband of the spectral window;
- a level of **LST bins** (one with ``lst``, or made MS by MS from one) holds
  ``<SW>_T###.MS`` and ``<SW>_LST###.MS``, found on disk;
- any other level holds ``<SW>.MS`` (and N2 obs_ids' time chunks ``<SW>_T###.MS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe.core.errors import DataHandlerError

LEVEL_KEYS = (
    "path", "input", "subbands", "parset", "data_column", "dysco_bits", "weight_bits", "split", "lst", "threads",
    "bandpass", "beam_corr", "flag", "interpolate", "avg_freq", "avg_time",
)
"""The keys of a ``[data_levels.<NAME>]`` table in nenucal 0.29.2 (imgpipe reads path,
input, subbands, lst and split; the others describe how nenucal makes the level)."""


@dataclass(frozen=True)
class Level:
    name: str
    path: str | None
    """Directory template (``%NODE%``, ``%OBS_ID%``, ``%N1_OBS_ID%``, ``%YEAR%``, ``%MONTH%``)."""
    input: str | None = None
    subbands: bool | None = None
    lst: bool = False
    split: bool = False


def is_subband_level(levels: dict[str, Level], name: str) -> bool:
    """MSs one per subband (``SB<n>.MS``), as at L1."""
    level = levels.get(name)
    if level is not None and level.input is not None:
        return False
    if level is not None and level.subbands is not None:
        return level.subbands
    return name.lower().startswith("l1")


def is_lst_layout(levels: dict[str, Level], name: str) -> bool:
    """MSs that are LST bins: the level's own ``lst``, or that of the level it is made from MS by MS."""
    seen: set[str] = set()
    while name in levels and name not in seen:
        seen.add(name)
        level = levels[name]
        if level.lst:
            return True
        if level.input is None or level.split or is_subband_level(levels, level.input):
            return False
        name = level.input
    return False


def parse_levels(path: Path, data: dict) -> dict[str, Level]:
    """The levels of a data handler file, in either format; one clear line naming the file otherwise."""
    old = {k: data[k] for k in ("data_level_path", "l1_to_l2_config", "lst_binning") if k in data}
    new = data.get("data_levels")
    if new is not None and old:
        raise DataHandlerError(
            f"{path}: [data_levels] replaces {', '.join('[' + k + ']' for k in old)}: give one of the two formats"
        )
    if new is not None:
        return _new_format(path, new)
    if "data_level_path" not in old:
        raise DataHandlerError(f"{path}: missing section [data_levels] (or the older [data_level_path])")
    return _old_format(path, old)


def _table(path: Path, where: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise DataHandlerError(f"{path}: {where} must be a table")
    return value


def _template(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DataHandlerError(f"{path}: {where} must be a directory template string")
    return value


def _new_format(path: Path, tables: Any) -> dict[str, Level]:
    levels = {}
    for name, table in _table(path, "[data_levels]", tables).items():
        where = f"[data_levels.{name}]"
        table = _table(path, where, table)
        unknown = [k for k in table if k not in LEVEL_KEYS]
        if unknown:
            raise DataHandlerError(f"{path}: unknown key {unknown[0]!r} in {where} (known: {', '.join(LEVEL_KEYS)})")
        if "path" not in table:
            raise DataHandlerError(f"{path}: {where} needs path (the directory template of its MSs)")
        subbands = table.get("subbands")
        if subbands is not None and not isinstance(subbands, bool):
            raise DataHandlerError(f"{path}: {where} subbands = {subbands!r}: must be true or false")
        level_input = table.get("input")
        if level_input is not None and not isinstance(level_input, str):
            raise DataHandlerError(f"{path}: {where} input = {level_input!r}: must be the name of a level")
        for key in ("lst", "split"):
            if key in table and not isinstance(table[key], dict):
                raise DataHandlerError(f"{path}: {where} {key} must be a table")
        levels[name] = Level(name, _template(path, f"{where} path", table["path"]), level_input, subbands,
                             lst="lst" in table, split="split" in table)
    for level in levels.values():
        if level.input is not None and level.input not in levels:
            raise DataHandlerError(f"{path}: [data_levels.{level.name}] input = {level.input!r}: no such level "
                                   f"(known: {', '.join(levels)})")
        if level.input == level.name:
            raise DataHandlerError(f"{path}: [data_levels.{level.name}] is its own input")
    return levels


def _old_format(path: Path, sections: dict) -> dict[str, Level]:
    paths = _table(path, "[data_level_path]", sections["data_level_path"])
    l1_to_l2 = _table(path, "[l1_to_l2_config]", sections.get("l1_to_l2_config", {}))
    lst_binning = _table(path, "[lst_binning]", sections.get("lst_binning", {}))
    levels = {}
    for name in dict.fromkeys([*paths, *l1_to_l2, *lst_binning]):
        template = _template(path, f"[data_level_path] {name}", paths[name]) if name in paths else None
        # a level with an l1_to_l2 parset is made from L1, as nenucal's l1_to_l2 does
        made_from_l1 = name in l1_to_l2 and "L1" in paths and name != "L1"
        levels[name] = Level(name, template, "L1" if made_from_l1 else None, lst=name in lst_binning)
    return levels
