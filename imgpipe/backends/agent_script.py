"""The node agent: one small Python process per SSH node that starts that node's jobs.

Why: a new SSH session per job costs a login shell, and so the user's ``~/.bashrc``
(conda or pyenv init: 0.1-0.5 s of CPU each time), on every job. With 2 slots per node
and short jobs that made slots wait ~0.7 s between jobs on a busy 2-core machine. The
agent is started once per node and run (one SSH session, one ``~/.bashrc``); each job
is then a fork of the same bash wrapper as before (``job_script``), with the same
guarantees: the agent holds each wrapper's stdin, so a ``stop``, a lost connection, a
dead imgpipe or a dead agent all close it and the wrapper stops its job.

Protocol, one line per message (job ids are short tokens without spaces):
imgpipe → agent: ``run <id> <json argv>``, ``in <id> <text>`` (a line to the job's
stdin), ``close <id>`` (close the job's stdin).
agent → imgpipe: ``ready <cores> <memory kB> <limited by>`` once (see
``scripts/node_capacity.py``; a bare ``ready`` if the node could not tell), ``o <id> <line>`` (a line of the job's output),
``x <id> <exit status> <peak RSS kB> <user s> <sys s>`` when the wrapper has ended (the
agent reaps it with ``wait4``: the job's peak memory and CPU time, so the wrapper needs
no accounting launcher of its own), ``e <id> <message>`` when it could not be started.

The agent needs python3 (3.5 or later, standard library only) on the node; without it
imgpipe opens an SSH session per job as before.
"""

from __future__ import annotations

from pathlib import Path

_SCRIPTS = Path(__file__).parent / "scripts"
AGENT = (_SCRIPTS / "node_capacity.py").read_text() + "\n\n" + (_SCRIPTS / "node_agent.py").read_text()
"""The agent's source, run as ``python3 -I -S -c AGENT`` on the node: ``scripts/node_capacity.py``
(how the node's cores and memory are read, the same code as for this machine) then
``scripts/node_agent.py``."""

CAPACITY_SCRIPT = (_SCRIPTS / "node_capacity.py").read_text()
"""The node-size reading alone, for a node without an agent (see ``SSHPool.measure``)."""
CAPACITY_FALLBACK = (_SCRIPTS / "node_capacity_fallback.sh").read_text()
"""Runs ``CAPACITY_SCRIPT`` with the node's python3, or reads the size with the shell."""
