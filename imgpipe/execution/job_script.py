"""The bash wrapper that runs one WSClean argv on its node, locally or over SSH.

Why a wrapper: the same few guarantees are needed wherever a job runs, and bash is the
one thing every node has.

- ``source`` the env_file, ``mkdir -p`` the output directory, then start the argv in
  a session of its own (``setsid``), its output going to ``<out_dir>/<name>.log`` on
  the node (``tee``) and back to imgpipe line by line.
- A watcher kills the job's whole process group (SIGTERM, SIGKILL after a grace
  period) as soon as the wrapper's stdin closes or imgpipe writes ``stop <grace>``.
  imgpipe keeps that stdin open for the life of the job, so a Ctrl-C, a killed
  imgpipe or a lost SSH connection all stop the job on the node: no orphan can go on
  writing images while a retry writes the same ones.
- Control lines carry a per-job random token, so WSClean output can never be taken
  for one: ``@imgpipe-<token> started <pid>``, ``@imgpipe-<token> exit <rc>``
  followed by the output of bash's ``times`` (CPU time of the job) and ``... end``,
  and ``@imgpipe-<token> setup <what>`` when the env_file or out_dir step fails.

Values are positional parameters (``"$@"``) or shlex-quoted by the caller, never
pasted into shell code, so no config value or path can run a command of its own.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass

SETUP_FAILED = 126

# $1 token, $2 env file ('' for none), $3 out dir, $4 log file, $5 grace (s), $6... argv
_SCRIPT = r"""exec 2>&1
t="@imgpipe-$1"; f=$2; d=$3; log=$4; grace=$5; shift 5
case $f in "~/"*) f=$HOME/${f#"~/"};; esac
if [ -n "$f" ]; then source "$f" || { echo "$t setup env_file"; exit 126; }; fi
mkdir -p -- "$d" || { echo "$t setup out_dir"; exit 126; }
: > "$log" || { echo "$t setup log"; exit 126; }
exec 4<&0 5> >(exec tee -- "$log")
tee_pid=$!
setsid -- "$@" < /dev/null 4<&- >&5 2>&5 5>&- &
pid=$!
echo "$t started $pid"
(
  while read -r -u 4 cmd g; do [ "$cmd" = stop ] && break; done
  kill -TERM -- "-$pid"; sleep "${g:-$grace}"; kill -KILL -- "-$pid"
) 5>&- > /dev/null 2>&1 &
watcher=$!
wait "$pid" 2> /dev/null; rc=$?
kill "$watcher" 2> /dev/null
exec 5>&-
wait "$tee_pid"
echo "$t exit $rc"; times; echo "$t end"
exit "$rc"
"""


def new_token() -> str:
    """A fresh token for one job's control lines."""
    return secrets.token_hex(8)


def wrapped_argv(
    argv: list[str] | tuple[str, ...],
    out_dir: str,
    log_path: str,
    env_file: str | None,
    token: str,
    grace_s: float,
) -> list[str]:
    """argv that runs ``argv`` under the wrapper (a ``bash -c`` script and its arguments)."""
    return ["bash", "-c", _SCRIPT, "imgpipe-job", token, env_file or "", out_dir, log_path, f"{grace_s:g}", *argv]


def remote_command(*args, **kwargs) -> str:
    """The same, as one shell-quoted string for an SSH exec channel."""
    return shlex.join(wrapped_argv(*args, **kwargs))


_TIME = re.compile(r"(\d+)m([\d.]+)s")


@dataclass
class ControlState:
    """What the wrapper's control lines said about the job so far."""

    pid: int | None = None
    """PID (= process group) of the job on its node; None: it never started."""
    exit_code: int | None = None
    """Exit status as the wrapper saw it (128+N: killed by signal N)."""
    cpu_s: float | None = None
    """User + system CPU seconds of the wrapper's children (the job and tee)."""
    setup_failed: str | None = None
    """``env_file``, ``out_dir`` or ``log``: the step before the job that failed."""


class OutputParser:
    """Split the wrapper's output into control lines (kept in ``state``) and job output."""

    def __init__(self, token: str):
        self._prefix = f"@imgpipe-{token} "
        self.state = ControlState()
        self._after_exit: list[str] | None = None

    def feed(self, line: str) -> bool:
        """Record ``line`` if it is a control line (→ True); False for job output."""
        if not line.startswith(self._prefix):
            if self._after_exit is not None:  # bash's `times`: the job and tee have ended
                self._after_exit.append(line)
                return True
            return False
        words = line[len(self._prefix):].split()
        if words[:1] == ["started"] and len(words) == 2:
            self.state.pid = int(words[1])
        elif words[:1] == ["exit"] and len(words) == 2:
            self.state.exit_code = int(words[1])
            self._after_exit = []
        elif words[:1] == ["end"] and self._after_exit is not None:
            times = [int(m) * 60 + float(s) for m, s in _TIME.findall(" ".join(self._after_exit))]
            if len(times) == 4:  # shell user, shell sys, children user, children sys
                self.state.cpu_s = times[2] + times[3]
            self._after_exit = None
        elif words[:1] == ["setup"] and len(words) == 2:
            self.state.setup_failed = words[1]
        return True


_SETUP_REASONS = {
    "env_file": "cannot source the env_file",
    "out_dir": "cannot create the output directory",
    "log": "cannot write the job log",
}


def wrapper_exit(rc: int) -> int:
    """Exit status as Python reports it: 128+N from bash (killed by signal N) → -N."""
    import signal

    if rc > 128:
        try:
            signal.Signals(rc - 128)
            return 128 - rc
        except ValueError:
            pass
    return rc


def outcome(state: ControlState, last_line: str = "") -> tuple[str, int | None, str]:
    """(status, exit code, reason) of a job whose wrapper has ended, from its control lines."""
    from imgpipe.results import FAILED, OK, describe_exit

    if state.setup_failed:
        why = _SETUP_REASONS.get(state.setup_failed, f"{state.setup_failed} failed")
        return FAILED, SETUP_FAILED, why + (f": {last_line}" if last_line else "")
    if state.exit_code is None:
        return FAILED, None, "the job's wrapper ended without an exit status"
    code = wrapper_exit(state.exit_code)
    return (OK, 0, "") if code == 0 else (FAILED, code, describe_exit(code))
