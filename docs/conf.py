"""Sphinx configuration of imgpipe's manual (MyST Markdown, pydata theme, sphinx-click).

The config reference's key tables are written here, at each build, from imgpipe's
schema (imgpipe/core/config.py): the docs cannot drift from what the parser accepts.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the imgpipe next to these docs, installed or not

from imgpipe._version import __version__  # noqa: E402
from imgpipe.core.config import DataHandlerRef, MPIConfig, PrefectConfig, WorkerConfig  # noqa: E402
from imgpipe.core.schema import reference_table  # noqa: E402

project = "imgpipe"
author = "the imgpipe developers"
copyright = "2026, the imgpipe developers"
version = release = __version__

extensions = ["myst_parser", "sphinx_click"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
html_theme = "pydata_sphinx_theme"
html_title = f"imgpipe {release}"
html_theme_options = {"navigation_with_keys": False, "show_prev_next": True}


def _write_config_tables() -> None:
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    sections = [("worker", WorkerConfig, ""), ("prefect", PrefectConfig, "optional"),
                ("mpi", MPIConfig, "optional; used by `--nodes_mpi`"), ("data_handler", DataHandlerRef, "optional")]
    for name, cls, note in sections:
        text = reference_table(name, cls, note)
        target = out / f"{name}.md"
        if not target.exists() or target.read_text() != text:  # unchanged: Sphinx need not rebuild
            target.write_text(text)


_write_config_tables()
