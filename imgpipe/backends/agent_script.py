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
agent → imgpipe: ``ready <pid>`` once, ``o <id> <line>`` (a line of the job's output),
``x <id> <exit status> <peak RSS kB> <user s> <sys s>`` when the wrapper has ended (the
agent reaps it with ``wait4``: the job's peak memory and CPU time, so the wrapper needs
no accounting launcher of its own), ``e <id> <message>`` when it could not be started.

The agent needs python3 (3.5 or later, standard library only) on the node; without it
imgpipe opens an SSH session per job as before.
"""

from __future__ import annotations

AGENT = r"""
import json, os, subprocess, sys, threading
out = sys.stdout.buffer
lock = threading.Lock()
jobs = {}
pumps = []

def say(data):
    with lock:
        try:
            out.write(data)
            out.flush()
        except (OSError, ValueError):  # imgpipe is gone: the jobs still get drained and stopped
            pass

def pump(jid, proc):
    for line in proc.stdout:
        say(b"o " + jid + b" " + line.rstrip(b"\r\n") + b"\n")
    _, status, ru = os.wait4(proc.pid, 0)  # the wrapper and what it reaped: the job, tee
    proc.returncode = code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    jobs.pop(jid, None)
    close(proc)
    proc.stdout.close()
    usage = "%d %d %.3f %.3f" % (code, ru.ru_maxrss, ru.ru_utime, ru.ru_stime)
    say(b"x " + jid + b" " + usage.encode() + b"\n")

def close(proc):
    try:
        proc.stdin.close()
    except OSError:
        pass

say(b"ready " + str(os.getpid()).encode() + b"\n")
for line in sys.stdin.buffer:
    cmd, _, rest = line.rstrip(b"\n").partition(b" ")
    jid, _, arg = rest.partition(b" ")
    if cmd == b"run":
        try:
            proc = subprocess.Popen(json.loads(arg.decode()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except (OSError, ValueError) as err:
            say(b"e " + jid + b" " + str(err).encode("utf-8", "replace") + b"\n")
            continue
        jobs[jid] = proc
        t = threading.Thread(target=pump, args=(jid, proc))
        t.start()
        pumps = [p for p in pumps if p.is_alive()] + [t]
    elif cmd in (b"in", b"close") and jid in jobs:
        proc = jobs[jid]
        if cmd == b"in":
            try:
                proc.stdin.write(arg + b"\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass
        else:
            close(proc)
# No more input: imgpipe is done, or gone. Closing each wrapper's stdin makes it stop its
# job (SIGTERM, SIGKILL after the grace); stay to drain their output until they end.
for proc in list(jobs.values()):
    close(proc)
for t in pumps:
    t.join()
"""
"""The agent's source, run as ``python3 -I -S -c AGENT`` on the node."""
