"""Runs the job as its child and reports the child's peak memory and CPU time (getrusage).

Used by the job wrapper where nothing of imgpipe's reaps the wrapper on the node (an SSH
session per job, srun): bash cannot tell a child's peak memory. It survives the SIGTERM
sent to the job's group, reports on fd 6, then dies the way the job died. Shipped as
source (``python3 -I -S -c``); standard library only.
"""
import os
import signal
import sys

token, argv = sys.argv[1], sys.argv[2:]
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.close(6)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"imgpipe: cannot run {argv[0]}: {err.strerror}", flush=True)
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
try:
    os.write(6, f"@imgpipe-{token} rusage {ru.ru_maxrss} {ru.ru_utime:.3f} {ru.ru_stime:.3f}\n".encode())
except OSError:  # imgpipe is gone (lost connection): nobody to tell
    pass
code = os.waitstatus_to_exitcode(status)
if code < 0:
    try:
        signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
        pass
    os.kill(os.getpid(), -code)
sys.exit(code)
