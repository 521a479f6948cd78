"""Sphinx configuration of imgpipe's manual (MyST Markdown, pydata theme, sphinx-click).

The config reference's key tables (in config.md itself) are rewritten here, at each
build, from imgpipe's schema (imgpipe/core/config_reference.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the imgpipe next to these docs, installed or not

from imgpipe._version import __version__  # noqa: E402
from imgpipe.core.config_reference import with_tables  # noqa: E402

project = "imgpipe"
author = "the imgpipe developers"
copyright = "2026, the imgpipe developers"
version = release = __version__

extensions = ["myst_parser", "sphinx_click"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "pydata_sphinx_theme"
html_title = f"imgpipe {release}"
html_theme_options = {"navigation_with_keys": False, "show_prev_next": True}


def _write_config_tables() -> None:
    page = DOCS / "config.md"
    text = page.read_text()
    updated = with_tables(text)
    if updated != text:  # unchanged: Sphinx need not rebuild
        page.write_text(updated)


_write_config_tables()
