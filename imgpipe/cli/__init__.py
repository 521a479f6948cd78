"""The ``imgpipe`` command (click) and its terminal display."""

from imgpipe.cli.command import main

__all__ = ["main"]
