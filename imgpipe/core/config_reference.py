"""The config reference's key tables, kept inside docs/config.md.

They are written into the Markdown itself (between two comment lines per section), so
the reference reads whole where people read it (the repository, an editor), not only
in the built manual; the docs build rewrites them and a unit test fails when they differ
from the schema, so they cannot drift from what the parser accepts.
"""

from __future__ import annotations

import re

from imgpipe.core.config import DataHandlerRef, MPIConfig, PrefectConfig, WorkerConfig
from imgpipe.core.schema import reference_table

SECTIONS = (
    ("worker", WorkerConfig, ""),
    ("prefect", PrefectConfig, "optional"),
    ("mpi", MPIConfig, "optional; used by `--nodes_mpi`"),
    ("data_handler", DataHandlerRef, "optional"),
)


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- \[{name}\] table: generated from imgpipe/core/config.py -->\n).*?(<!-- end of \[{name}\] table -->)",
                      re.S)


def with_tables(markdown: str) -> str:
    """``markdown`` with each section's table as the schema gives it now (a section whose
    two comment lines are missing is an error: the reference would silently lose it)."""
    for name, cls, note in SECTIONS:
        block = _block(name)
        if not block.search(markdown):
            raise ValueError(f"docs/config.md has no generated table for [{name}]")
        table = reference_table(name, cls, note)

        def put(m: re.Match[str], table: str = table) -> str:
            return m.group(1) + table + m.group(2)

        markdown = block.sub(put, markdown)
    return markdown
