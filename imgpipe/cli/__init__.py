"""The ``imgpipe`` command (click) and its terminal display."""

from imgpipe.cli.quick_exit import main

__all__ = ["main"]
