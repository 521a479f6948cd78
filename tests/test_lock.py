"""The venv the suite runs in is the lock: every package at its locked version, none unlocked.

``make demo`` and ``make test`` install from ``constraints.txt``; this test is what
makes a drifted venv (a package upgraded by hand, a pin the install did not apply, a
dependency added to pyproject.toml without ``make lock``) fail loudly instead of
passing on versions a new user would not get.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
NOT_LOCKED = {"imgpipe"}  # the project itself, installed editable


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: {line!r} is not a pin (name==version)"
        pins[canonical(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


in_project_venv = pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="runs in the project's .venv (made by make test); this interpreter is " + sys.prefix,
)


@in_project_venv
def test_every_installed_package_is_at_its_locked_version():
    pins, have = read_lock(LOCK.read_text()), installed()
    wrong = {n: (have[n], pins[n]) for n in have if n in pins and have[n] != pins[n]}
    assert not wrong, f"installed ≠ constraints.txt (installed, locked): {wrong}; run make setup"
    unlocked = sorted(set(have) - set(pins) - NOT_LOCKED)
    assert not unlocked, f"installed but not in constraints.txt: {unlocked}; run make lock"


@in_project_venv
def test_the_lock_covers_every_dependency_of_imgpipe():
    pins = read_lock(LOCK.read_text())
    requires = metadata.requires("imgpipe") or []
    names = {canonical(re.split(r"[ ;<>=!~\[]", r, maxsplit=1)[0]) for r in requires if "python_version < " not in r}
    assert names - set(pins) == set()


def test_the_lock_is_pins_only_and_says_when_it_was_made():
    text = LOCK.read_text()
    pins = read_lock(text)
    assert {"prefect", "pip", "setuptools", "python-casacore", "pytest"} <= set(pins)
    assert re.search(r"^# locked: \d{4}-\d{2}-\d{2} with Python 3\.\d+", text, re.M)
    with pytest.raises(AssertionError, match="not a pin"):
        read_lock("prefect>=3\n")
