"""Which commands a node has, as its jobs will see them (after the env_file).

Why: ``--nodes_mpi`` needs mpirun and wsclean-mp on the first MPI node, and Debian's
WSClean has no wsclean-mp. Finding that out before the first job, in one line, beats
a night of jobs each failing with mpirun's page of "could not find executable".
"""

from __future__ import annotations

import shlex
import subprocess

from imgpipe.core.errors import NodeError
from imgpipe.core.mpi import WSCLEAN_MP_HELP
from imgpipe.core.nodes import is_ssh

PROBE_TIMEOUT_S = 30.0

# $1 env file ('' for none), then the command names; prints "missing <name>" per missing
# one, then "done": a shell that died on the way (an env_file that exits, a node without
# bash) says nothing of what is missing, and must not pass for a node that has it all.
_SCRIPT = r"""f=$1; shift
case $f in "~/"*) f=$HOME/${f#"~/"};; esac
if [ -n "$f" ]; then source "$f" > /dev/null 2>&1 || { echo "envfail"; exit 0; }; fi
for c; do command -v -- "$c" > /dev/null 2>&1 || echo "missing $c"; done
echo done
"""


def missing_commands(host: str, env_file: str | None, names: list[str], ssh=None) -> list[str]:
    """The commands among ``names`` that ``host`` does not find on its PATH; NodeError if it cannot tell.

    ``ssh``: the run's SSH backend (its connections), for an SSH host.
    """
    argv = ["bash", "-c", _SCRIPT, "imgpipe-probe", env_file or "", *names]
    if is_ssh(host):
        out, status = _run_ssh(ssh.pool, host, shlex.join(argv))
    else:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise NodeError(f"{host}: cannot check for {', '.join(names)}: {err}") from None
        out, status = res.stdout + res.stderr, res.returncode
    lines = out.split("\n")
    if "envfail" in lines:
        raise NodeError(f"{host}: env_file {env_file} fails when sourced")
    if status != 0 or "done" not in lines:
        said = next((line for line in reversed(lines) if line.strip()), "no output")
        why = f"the shell exited with status {status}" if status else "the shell stopped early"
        hint = f" (does env_file {env_file} call exit?)" if env_file else ""
        raise NodeError(f"{host}: cannot check for {', '.join(names)}: {why}: {said}{hint}")
    return [line.split(" ", 1)[1] for line in lines if line.startswith("missing ")]


def _run_ssh(pool, host: str, command: str) -> tuple[str, int]:
    # paramiko: only for an SSH host
    import paramiko

    from imgpipe.backends.ssh import NodeUnreachable

    try:
        conn, chan = pool.open_channel(host)
    except NodeUnreachable as err:
        raise NodeError(str(err)) from None
    try:
        chan.settimeout(PROBE_TIMEOUT_S)
        chan.set_combine_stderr(True)
        chan.exec_command(command)
        out = chan.makefile("rb").read().decode("utf-8", "replace")
        return out, chan.recv_exit_status()
    except (OSError, EOFError, paramiko.SSHException) as err:
        raise NodeError(f"{host}: cannot check for commands: {err or type(err).__name__}") from None
    finally:
        pool.close_channel(host, conn, chan)


def check_mpi(config, ssh=None) -> None:
    """NodeError unless the first ``--nodes_mpi`` node has mpirun and wsclean-mp (after env_file).

    ``ssh``: the run's SSH backend, when that node is an SSH host.
    """
    host, mpi = config.nodes_mpi[0], config.mpi
    missing = missing_commands(host, config.worker.env_file, [mpi.mpirun[0], mpi.wsclean_mp[0]], ssh)
    if mpi.wsclean_mp[0] in missing:
        raise NodeError(f"--nodes_mpi: {mpi.wsclean_mp[0]} not found on {host}: {WSCLEAN_MP_HELP}")
    if mpi.mpirun[0] in missing:
        raise NodeError(
            f"--nodes_mpi: {mpi.mpirun[0]} not found on {host}: install MPI there (Debian: apt-get install openmpi-bin) "
            "or set [mpi] mpirun"
        )
