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
- With ``max_time``, the watcher stops the job the same way when it runs too long.
- Control lines carry a per-job random token, so WSClean output can never be taken
  for one: ``@imgpipe-<token> started <pid>``, ``@imgpipe-<token> exit <rc>``
  followed by the output of bash's ``times`` (CPU time of the job) and ``... end``,
  ``... rusage <maxrss kB> <user s> <sys s>`` (peak memory and CPU of the job, from a
  small python3 launcher around it, used only where nothing else waits for the
  wrapper on the job's node: an SSH session per job, or ``srun``; ``$IMGPIPE_PYTHON``
  if set, since ``python3`` on PATH may be a slow pyenv shim), ``... timeout <s>``,
  ``... slurm <job id>`` and ``... setup <what> [figures]`` when a step before the job
  fails (env_file, out_dir, log, the scratch folder or its free space).
- With a scratch folder (``[worker] temp_dir``): remove the folders beside it whose
  owner is gone (a killed run), check the free space, create it, make the job's MS links
  in it (``Job.ms_links``), remove it at the end.

Values are positional parameters (``"$@"``) or shlex-quoted by the caller, never
pasted into shell code, so no config value or path can run a command of its own.
"""

from __future__ import annotations

import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from imgpipe.core.results import CANCELLED, FAILED, OK, TIMED_OUT, describe_exit, format_duration

SETUP_FAILED = 126

SCRIPTS = Path(__file__).parent / "scripts"
_SCRIPT = (SCRIPTS / "job_wrapper.sh").read_text()
"""The wrapper (``scripts/job_wrapper.sh``), run as ``bash -c`` with its arguments."""
_ACCOUNTING = (SCRIPTS / "rusage_launcher.py").read_text()
"""The accounting launcher (``scripts/rusage_launcher.py``), run as ``python3 -I -S -c``."""


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
    max_time_s: int | None = None,
    rusage_launcher: bool = False,
    scratch: str | None = None,
    min_free_mb: int = 0,
    env: tuple[tuple[str, str], ...] = (),
    links: tuple[tuple[str, str], ...] = (),
    ms: tuple[str, ...] = (),
    column: str | None = None,
) -> list[str]:
    """argv that runs ``argv`` under the wrapper (a ``bash -c`` script and its arguments).

    ``grace_s``: SIGTERM → SIGKILL delay when the job is stopped; ``max_time_s``: the
    job is stopped (and reported timed out) after this many seconds.
    ``rusage_launcher``: start the job through the python3 launcher that reports its
    peak memory and CPU (~20 ms more per job). Needed wherever the wrapper's parent is
    big (imgpipe itself: Linux gives a started process its parent's peak memory, see
    ``local._own_peak_kb``) or is not on the job's node (an SSH session, srun); the
    node agent is small and reaps the wrapper itself, so ``wait4`` there is the job's.
    ``scratch``: the job's own scratch folder (``Job.scratch``), made before it starts
    (if its file system has ``min_free_mb`` free) and removed when it ends.
    ``env``: variables exported before the env_file is sourced (``Job.env``: names and
    whole numbers only; the wrapper ignores anything else).
    ``links``: (link, MS) pairs made in the scratch folder once it exists (``Job.ms_links``).
    ``ms``: the job's MSs: one missing on the node fails its setup (``no_ms``), WSClean not run.
    ``column``: the column WSClean reads (``Job.data_column``): an MS without it fails the
    job's setup (``no_column``), WSClean not run.
    """
    # --norc: bash started below sshd would read ~/.bashrc again (the login shell or the
    # node agent has already set the environment; the env_file is sourced explicitly)
    return [
        "bash", "--norc", "--noprofile", "-c", _SCRIPT, "imgpipe-job", token, env_file or "", out_dir, log_path,
        f"{grace_s:g}", "" if max_time_s is None else str(int(max_time_s)),
        scratch or "", str(int(min_free_mb) * 1024), _ACCOUNTING if rusage_launcher else "",
        " ".join(f"{name}={value}" for name, value in env), str(len(links)), *(x for pair in links for x in pair),
        str(len(ms)), *ms, column or "", *argv,
    ]


_TIME = re.compile(r"(\d+)m([\d.]+)s")
WSCLEAN_ERROR = re.compile(r"^\s*(Error\b|ERROR\b|\+? ?An exception occ?ured)")
"""How WSClean's errors begin ("Error occurred while …", "+ An exception occured: …"); its
other output never does."""


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
    """``env_file``, ``out_dir``, ``log``, ``temp_dir`` or ``temp_space``: the step before the job that failed."""
    setup_detail: tuple[str, ...] = ()
    """Figures of a failed setup step (``temp_space``: kB free, kB needed)."""
    max_rss_mb: float | None = None
    """Peak resident memory of the job (MiB), when python3 is on the node."""
    timed_out: int | None = None
    """The job ran past max_time (this many seconds) and was stopped."""
    slurm_job: str | None = None
    """SLURM job id (``1234`` or ``1234.5`` for a step), when run through SLURM."""
    oom_killed: bool = False
    """The job died of SIGKILL while the node's count of OOM kills rose (``/proc/vmstat``)."""
    space: tuple[tuple[int, int, str], ...] = ()
    """After a failure: (kB free, kB in all, mount point) of the file systems of its out dir and scratch folder."""
    error_line: str | None = None
    """The first line of the job's output that reads as an error of WSClean's (:data:`WSCLEAN_ERROR`):
    an exit status of 0 after one is no success (3.6 exits 0 after "Error occurred while finishing
    IO task: Error opening temporary data file", with an image of neither MS)."""


class OutputParser:
    """Split the wrapper's output into control lines (kept in ``state``) and job output."""

    def __init__(self, token: str):
        self._prefix = f"@imgpipe-{token} "
        self.state = ControlState()
        self.started_at: float | None = None
        """When the line saying WSClean started arrived (Unix time)."""
        self.last_words = ""
        """The job's last output line with words in it (WSClean frames its errors with '+ + +' lines)."""
        self._after_exit: list[str] | None = None
        self._have_rusage = False

    def take(self, line: str, on_line) -> None:
        """One line of the wrapper's output: control lines are recorded, job output goes to ``on_line``."""
        if self.feed(line):
            if self.started_at is None and self.state.pid is not None:
                self.started_at = time.time()
            return
        if any(c.isalpha() for c in line):
            self.last_words = line
            if self.state.error_line is None and WSCLEAN_ERROR.match(line):
                self.state.error_line = line.strip()
        on_line(line)

    def measured(self, max_rss_kb: int, user_s: float, sys_s: float) -> None:
        """The job's peak memory and CPU time, from ``getrusage`` on its node (they replace bash's ``times``)."""
        self.state.max_rss_mb = max_rss_kb / 1024.0
        self.state.cpu_s = user_s + sys_s
        self._have_rusage = True

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
            if len(times) == 4 and not self._have_rusage:  # shell user/sys, children user/sys
                self.state.cpu_s = times[2] + times[3]
            self._after_exit = None
        elif words[:1] == ["setup"] and len(words) >= 2:
            self.state.setup_failed, self.state.setup_detail = words[1], tuple(words[2:])
        elif words[:1] == ["rusage"] and len(words) == 4:
            self.measured(int(words[1]), float(words[2]), float(words[3]))
        elif words[:1] == ["timeout"] and len(words) == 2:
            self.state.timed_out = int(words[1])
        elif words[:1] == ["slurm"] and len(words) == 2:
            self.state.slurm_job = words[1]
        elif words == ["oom"]:
            self.state.oom_killed = True
        elif words[:1] == ["space"] and len(words) >= 4 and words[1].isdigit() and words[2].isdigit():
            self.state.space += ((int(words[1]), int(words[2]), " ".join(words[3:])),)
        return True


_SETUP_REASONS = {
    "env_file": "cannot source the env_file",
    "out_dir": "cannot create the output directory",
    "log": "cannot write the job log",
    "temp_dir": "cannot create the job's scratch folder ([worker] temp_dir)",
}
MS_NOT_ON_NODE = "Measurement Set not found on its node"
"""The reason of a job one of whose MSs is not on its node (WSClean was not run)."""
MS_WITHOUT_COLUMN = "Measurement Set without the column WSClean reads"
"""The reason of a job one of whose MSs lacks its ``data-column`` (WSClean was not run)."""
NOT_THERE_YET = (MS_NOT_ON_NODE, MS_WITHOUT_COLUMN)
"""Reasons that, for a night's job (data handler), mean its data is not there yet."""


def _size(kb: int) -> str:
    gib = kb / 1024**2
    return f"{gib / 1024:.1f} TiB" if gib >= 1024 else f"{gib:.1f} GiB"


def _setup_reason(state: ControlState) -> str:
    if state.setup_failed == "no_ms":
        return f"{MS_NOT_ON_NODE}: {' '.join(state.setup_detail)}"
    if state.setup_failed == "no_column" and len(state.setup_detail) >= 2:
        column, path = state.setup_detail[0], " ".join(state.setup_detail[1:])
        return (f"{MS_WITHOUT_COLUMN}: {path} has no {column} column on its node; "
                "set [wsclean] data-column to a column it has")
    if state.setup_failed == "temp_space" and len(state.setup_detail) == 2:
        free, least = (_size(int(x)) for x in state.setup_detail)
        return (f"not started: the scratch folder's file system ([worker] temp_dir) has {free} free, "
                f"less than temp_min_free = {least}; free some space there or lower temp_min_free")
    return _SETUP_REASONS.get(state.setup_failed or "", f"{state.setup_failed} failed")


def wrapper_exit(rc: int) -> int:
    """Exit status as Python reports it: 128+N from bash (killed by signal N) → -N."""
    if rc > 128:
        try:
            signal.Signals(rc - 128)
            return 128 - rc
        except ValueError:
            pass
    return rc


def outcome(
    state: ControlState, last_line: str = "", grace_s: float | None = None, cancelled: bool = False,
) -> tuple[str, int | None, str]:
    """(status, exit code, reason) of a job whose wrapper has ended, from its control lines.

    ``cancelled``: the run was cancelled meanwhile, so a failure is its doing (CANCELLED).
    """
    status, code, reason = _outcome(state, last_line, grace_s)
    status, reason = as_cancelled(status, reason, cancelled)
    return status, code, reason


def as_cancelled(status: str, reason: str, cancelled: bool) -> tuple[str, str]:
    """A job that failed while its run was being cancelled was stopped by the cancel: CANCELLED."""
    if status == FAILED and cancelled:
        return CANCELLED, f"cancelled ({reason})"
    return status, reason


def _outcome(state: ControlState, last_line: str, grace_s: float | None) -> tuple[str, int | None, str]:
    if state.timed_out is not None:
        code = None if state.exit_code is None else wrapper_exit(state.exit_code)
        how = "" if code is None else f" ({describe_exit(code)})"
        grace = "" if grace_s is None else f", SIGKILL after {grace_s:g} s if still running"
        return TIMED_OUT, code, f"timed out: ran longer than max_time {format_duration(state.timed_out)}; stopped with SIGTERM{grace}{how}"
    if state.setup_failed:
        why = _setup_reason(state)
        detail = f": {last_line}" if last_line and state.setup_failed not in ("temp_space", "no_ms", "no_column") else ""
        return FAILED, SETUP_FAILED, why + detail
    if state.exit_code is None:
        return FAILED, None, "the job's wrapper ended without an exit status"
    code = wrapper_exit(state.exit_code)
    if code == 0 and state.error_line:
        return FAILED, 0, f"WSClean exited 0 after printing an error: {state.error_line[:300]}"
    if code == 0:
        return OK, 0, ""
    if full := _full_file_system(state, f"{state.error_line or ''} {last_line}"):
        return FAILED, code, f"no space left on device: {full} ({describe_exit(code)}: {cut(last_line.strip(), 200)})"
    said = f": {cut(last_line.strip(), 300)}" if last_line.strip() else ""  # WSClean's last words
    return FAILED, code, describe_exit(code) + said


LOW_SPACE_KB = 64 * 1024
"""Free space under which a failure to write is a full disk (a write fails once none is left)."""
WRITE_ERROR = re.compile(r"(?i)no space left|error writing|write error|(?:could|can)not write|failed to write")
"""How WSClean (CFITSIO, casacore, its own) says a write failed."""


def _full_file_system(state: ControlState, words: str) -> str | None:
    """The full file system a failed job wrote to, as ``the file system mounted at X has
    1.9 MiB free of 6.0 MiB``; None when none is (nearly) full or WSClean's words are not
    about a failed write."""
    if not WRITE_ERROR.search(words or ""):
        return None
    for free, total, mount in state.space:
        if free < LOW_SPACE_KB:
            left = f"{_mib(free)} free" if free else "nothing free"
            return f"the file system mounted at {mount} has {left} of {_mib(total)}"
    return None


def _mib(kb: int) -> str:
    return _size(kb) if kb >= 1024**2 else f"{kb / 1024:.1f} MiB"


def cut(text: str, limit: int) -> str:
    """``text`` of at most ``limit`` characters, cut after a word (with ``…``), not inside one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    return (head.rsplit(" ", 1)[0] if " " in head else head) + " …"
