"""One schema per config key: parsing, the unknown-key check and the docs come from it."""

from __future__ import annotations

import dataclasses

import pytest

from imgpipe.core.config import DataHandlerRef, MPIConfig, PrefectConfig, WorkerConfig, load_config
from imgpipe.core.errors import ConfigError
from imgpipe.core.schema import DURATION, keys_of, parse_duration, reference_table

SECTIONS = {"worker": WorkerConfig, "prefect": PrefectConfig, "mpi": MPIConfig, "data_handler": DataHandlerRef}
MINIMAL = "[wsclean]\nname = 'img'\n"


@pytest.mark.parametrize("section", SECTIONS)
def test_every_key_has_a_kind_a_doc_and_a_default_the_dataclass_agrees_with(section):
    cls = SECTIONS[section]
    specs = keys_of(cls)
    assert specs, section
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for spec in specs:
        assert spec.doc and spec.doc == spec.doc.strip() and not spec.doc.endswith("."), (section, spec.name)
        assert fields[spec.name].default == spec.default
        assert spec.default_text()
        if spec.kind is DURATION:
            assert spec.unit == "s" and not spec.name.endswith(("_s", "_seconds")), spec.name


@pytest.mark.parametrize(("text", "seconds"), [(7200, 7200), (0.5, 0.5), ("90s", 90), ("10m", 600), ("1h30m", 5400),
                                               ("1.5h", 5400), (" 3600 ", 3600)])
def test_durations_take_seconds_or_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "", "h", True, "1d", [1]])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_have_one_naming_rule_and_the_old_names_still_load(tmp_path):
    new = tmp_path / "new.toml"
    new.write_text("[worker]\nretry_delay = '1m'\nhost_cooldown = 5\nkill_grace = '10s'\nmax_time = '2h'\n" + MINIMAL)
    old = tmp_path / "old.toml"
    old.write_text("[worker]\nretry_delay_seconds = 60\nhost_cooldown_s = 5\nkill_grace_s = 10\nmax_time = 7200\n" + MINIMAL)
    assert load_config(new).worker == load_config(old).worker
    w = load_config(new).worker
    assert (w.retry_delay, w.host_cooldown, w.kill_grace, w.max_time) == (60, 5, 10, 7200)


def test_an_old_and_a_new_name_together_are_refused(tmp_path):
    both = tmp_path / "both.toml"
    both.write_text("[worker]\nkill_grace = 5\nkill_grace_s = 10\n" + MINIMAL)
    with pytest.raises(ConfigError, match=r"\[worker\] kill_grace and kill_grace_s are the same key: give one"):
        load_config(both)


def test_the_unknown_key_check_lists_the_schema_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nmax_concurent = 2\n" + MINIMAL)
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    message = str(err.value)
    assert "unknown key 'max_concurent' in [worker]" in message
    assert all(spec.name in message for spec in keys_of(WorkerConfig))


def test_the_reference_table_shows_each_key_its_default_unit_and_old_name():
    table = reference_table("worker", WorkerConfig)
    lines = table.splitlines()
    assert lines[0] == "## `[worker]`"
    assert reference_table("mpi", MPIConfig, "optional").splitlines()[0] == "## `[mpi]` (optional)"
    assert len([line for line in lines if line.startswith("| `")]) == len(keys_of(WorkerConfig))
    assert "| `max_concurrent` | integer | `4` |" in table and "at least 1" in table
    assert "| `kill_grace` | duration (s) | `30` |" in table and "old name: `kill_grace_s`" in table
    assert "| `order` | string | `'largest_first'` |" in table and "one of `'largest_first'`, `'as_given'`" in table


def test_a_default_is_shown_as_it_is_written_in_a_config():
    """Issue 45: 16. A pattern's backslashes once each, as in a TOML literal string, and
    each shown default reads back as the key's default."""
    import re
    import tomllib

    table = reference_table("worker", WorkerConfig)
    assert r"| `run_on_file_host_pattern` | string | `'\/net/(node\d{3})'` |" in table
    for spec in keys_of(WorkerConfig):
        if isinstance(spec.default, str) and spec.shown is None:
            shown = re.search(rf"^\| `{spec.name}` \| [^|]+ \| `(.*?)` \|", table, re.M).group(1)
            assert tomllib.loads(f"k = {shown}")["k"] == spec.default, spec.name


def test_docs_config_md_holds_the_tables_the_schema_gives():
    """The config reference reads whole in the repository (not only in the built manual),
    and never drifts: `make docs` rewrites these tables; this fails when they are stale."""
    from pathlib import Path

    from imgpipe.core.config_reference import SECTIONS, with_tables

    page = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    assert with_tables(page) == page, "docs/config.md's key tables are stale: run make docs"
    for name, cls, _ in SECTIONS:
        assert all(f"| `{spec.name}` |" in page for spec in keys_of(cls)), name
