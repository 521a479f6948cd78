"""Read a TOML file into a dict, turning every failure into one clear line."""

from __future__ import annotations

import tomllib  # the standard library's tomli (Python 3.11+)
from pathlib import Path

from imgpipe.core.errors import ImgpipeError


def read_toml(path: Path, what: str, error: type[ImgpipeError] = ImgpipeError) -> dict:
    """Parse ``path``; ``what`` names the file in messages ("config file", "data handler file")."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} is a directory, not a file: {path}") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not a text (UTF-8) file") from None
    except tomllib.TOMLDecodeError as err:
        # the message already says "(at line L, column C)"
        raise error(f"{path}: invalid TOML: {err}") from None
