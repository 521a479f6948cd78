"""One schema per config key: its name, kind, default, unit and doc, in one place.

Each section of the config file is a frozen dataclass whose fields are declared with
:func:`key`; the parser (:func:`parse_section`), the unknown-key check and the config
reference of the docs (``docs/conf.py``) all read the fields, so a key cannot be
parsed one way, checked another and documented a third.

Durations carry no unit in their name: every one takes seconds (a number) or a text
with units (``'90s'``, ``'10m'``, ``'1h30m'``). Keys renamed for that keep their old
name as an alias (``old_names``).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable

from imgpipe.core.errors import BadValue
from imgpipe.core.resources import parse_resources, size_mb


@dataclass(frozen=True)
class Kind:
    """What a key's value is: how it is read from TOML and how it is described."""

    name: str
    """For messages: ``must be {name}``."""
    docs: str
    """For the reference: the type column."""
    read: Callable[[Any], Any]
    """TOML value → Python value; raises ValueError when it does not fit."""


def _strict(kind: type) -> Callable[[Any], Any]:
    def read(value: Any) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):  # TOML true is no integer
            raise ValueError(value)
        return value

    return read


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: Any) -> float:
    """``7200``, ``0.5``, ``'2h'``, ``'1h30m'``, ``'90s'``, ``'3600'`` → seconds; ValueError otherwise.

    A negative number is returned as such: the key's ``minimum`` says why it is wrong.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value.strip().lower())) and any(m.groups()):
        h, mi, se = (float(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + se
    else:
        raise ValueError(value)
    return seconds


def _argv(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise ValueError(value)
    try:
        return tuple(shlex.split(value))
    except ValueError as err:
        raise BadValue(str(err)) from None


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(value)
    bad = [n for n in value if not isinstance(n, str) or not re.match(r"^[A-Za-z_]\w*$", n)]
    if bad:
        raise BadValue(f"{bad[0]!r} is not an environment variable name")
    return tuple(value)


def _table(value: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, dict):
        raise ValueError(value)
    return tuple(value.items())


def _text_or_none(value: Any) -> str | None:
    """A string; the empty string means "not set" (as in the original's template)."""
    if not isinstance(value, str):
        raise ValueError(value)
    return value or None


STRING = Kind("a string", "string", _strict(str))
OPTIONAL_STRING = Kind("a string", "string", _text_or_none)
INTEGER = Kind("an integer", "integer", _strict(int))
BOOLEAN = Kind("true or false", "boolean", _strict(bool))
DURATION = Kind("seconds (a number) or like '90s', '10m', '1h30m'", "duration", parse_duration)
ARGV = Kind("a string (split like a shell command line)", "string (shell words)", _argv)
NAMES = Kind("an array of environment variable names", "array of names", _names)
TABLE = Kind("a table", "table", _table)


SIZE = Kind("a size such as '10GB', '512MB' (GB = 1024 MB) or a number of MB", "size (MB)", size_mb)
RESOURCES = Kind("a table of categories", "table of categories", parse_resources)


def key(
    default: Any,
    doc: str,
    kind: Kind,
    *,
    minimum: float | None = None,
    choices: tuple[str, ...] = (),
    old_names: tuple[str, ...] = (),
    shown: str | None = None,
    unit: str | None = None,
    code: bool = False,
) -> Any:
    """A config key as a dataclass field: ``doc`` is its one line in the reference.

    ``shown`` is how the default reads in the reference when ``repr`` would not do
    (e.g. ``none``); ``unit`` is the unit of a plain number (``s`` for durations).
    ``code``: the key names a command or code that imgpipe runs (a program, a file sourced
    or imported): a config that sets it is used only from files no one else can write.
    """
    if kind is DURATION:
        unit = unit or "s"
    return dataclasses.field(
        default=default,
        metadata={"doc": doc, "kind": kind, "minimum": minimum, "choices": choices, "old_names": old_names,
                  "shown": shown, "unit": unit, "code": code},
    )


@dataclass(frozen=True)
class KeySpec:
    """A key of a section, as the parser and the docs see it."""

    name: str
    kind: Kind
    default: Any
    doc: str
    minimum: float | None
    choices: tuple[str, ...]
    old_names: tuple[str, ...]
    shown: str | None
    unit: str | None
    code: bool = False

    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None:
            return "none"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return toml_text(" ".join(value)) if self.kind is ARGV else toml_text(",".join(value)) if value else "none"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return toml_text(value) if isinstance(value, str) else str(value)


def toml_text(value: str) -> str:
    """A string as it is written in a config: a TOML literal string (``'/net/(node\\d{3})'``,
    its backslashes as they are), or a basic one when it holds a quote or a line break."""
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def keys_of(section_class: type) -> list[KeySpec]:
    """The keys of a section class, in declaration order (fields declared with :func:`key`)."""
    specs = []
    for f in dataclasses.fields(section_class):
        if "kind" not in f.metadata:
            continue  # not read from the file (set by imgpipe itself)
        m = f.metadata
        specs.append(KeySpec(f.name, m["kind"], f.default, m["doc"], m["minimum"], m["choices"], m["old_names"],
                             m["shown"], m["unit"], m["code"]))
    return specs


def parse_section(section: str, section_class: type, table: Any, where: str, ignored: tuple[str, ...] = ()) -> dict:
    """``table`` (as read from TOML) → the values it sets, by field name, each checked.

    Raises ``ValueError`` with the whole one-line message (``where: [section] key =
    value: must be ...``), for the caller to raise as its own error type. Keys in
    ``ignored`` are accepted and dropped.
    """
    if not isinstance(table, dict):
        raise ValueError(f"{where}: {section} must be a section ([{section}])")
    specs = keys_of(section_class)
    by_name = {s.name: s for s in specs}
    by_name.update({old: s for s in specs for old in s.old_names})
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for name, raw in table.items():
        if name in ignored:
            continue
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(s.name for s in specs)
            raise ValueError(f"{where}: unknown key {name!r} in [{section}] (known: {known})")
        if spec.name in given:
            raise ValueError(f"{where}: [{section}] {given[spec.name]} and {name} are the same key: give one")
        given[spec.name] = name
        try:
            value = spec.kind.read(raw)
        except BadValue as err:
            if isinstance(raw, dict):  # a table of its own: [section.name] key = value: why
                raise ValueError(f"{where}: [{section}.{name}] {err}") from None
            raise ValueError(f"{where}: [{section}] {name} = {raw!r}: {err}") from None
        except ValueError:
            raise ValueError(f"{where}: [{section}] {name} = {raw!r}: must be {spec.kind.name}") from None
        if spec.minimum is not None and value is not None and value < spec.minimum:
            least = int(spec.minimum) if float(spec.minimum).is_integer() else spec.minimum
            raise ValueError(
                f"{where}: [{section}] {name} = {raw!r}: must be at least {least}" if least else
                f"{where}: [{section}] {name} = {raw!r}: must not be negative"
            )
        if spec.choices and value not in spec.choices:
            raise ValueError(f"{where}: [{section}] {name} = {raw!r}: must be {' or '.join(map(repr, spec.choices))}")
        values[spec.name] = value
    return values


def reference_table(section: str, section_class: type, note: str = "") -> str:
    """The section's keys as a Markdown table (under a ``##`` heading) for the docs' config reference."""
    heading = f"## `[{section}]`" + (f" ({note})" if note else "")
    rows = [heading, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for spec in keys_of(section_class):
        extra = []
        if spec.choices:
            extra.append("one of " + ", ".join(f"`{c!r}`" for c in spec.choices))
        if spec.minimum is not None:
            least = int(spec.minimum) if float(spec.minimum).is_integer() else spec.minimum
            extra.append(f"at least {least}" if least else "not negative")
        if spec.old_names:
            extra.append("old name" + ("s" if len(spec.old_names) > 1 else "") + ": " + ", ".join(f"`{n}`" for n in spec.old_names))
        if spec.code:
            extra.append("names code: set, the config must be [yours alone](deployments.md#who-may-start-a-run)")
        doc = spec.doc + (f" ({'; '.join(extra)})" if extra else "")
        kind = spec.kind.docs + (f" ({spec.unit})" if spec.unit else "")
        rows.append(f"| `{spec.name}` | {kind} | `{spec.default_text()}` | {doc.replace('|', '&#124;')} |")
    return "\n".join(rows) + "\n"
