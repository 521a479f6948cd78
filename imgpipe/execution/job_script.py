"""The bash wrapper around a WSClean argv: source env_file, make out_dir, exec.

Values are passed as positional parameters (``"$@"``) or shlex-quoted, never pasted
into shell code, so no config value or path can run a command of its own.
"""

from __future__ import annotations

import shlex

# $1 = env file ('' for none), $2 = out dir, $3... = argv
# A leading ~/ in env_file is expanded on the host that runs the job.
_SCRIPT = (
    'f=$1; case $f in "~/"*) f=$HOME/${f#"~/"};; esac; '
    'if [ -n "$f" ]; then source "$f" || exit 126; fi; '
    'mkdir -p -- "$2" || exit 126; shift 2; exec "$@"'
)


def wrapped_argv(argv: list[str] | tuple[str, ...], out_dir: str, env_file: str | None) -> list[str]:
    """argv running ``argv`` under bash after sourcing ``env_file`` and creating ``out_dir``."""
    return ["bash", "-c", _SCRIPT, "imgpipe-job", env_file or "", out_dir, *argv]


def remote_command(argv: list[str] | tuple[str, ...], out_dir: str, env_file: str | None) -> str:
    """The same, as one shell-quoted string for an SSH exec channel."""
    return shlex.join(wrapped_argv(argv, out_dir, env_file))
