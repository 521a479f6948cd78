"""imgpipe's node agent: started once per SSH node and run, it forks each job's wrapper.

Shipped to the node as source (``python3 -I -S -c <node_capacity.py + this file>``):
standard library only, and Python 3.5 syntax (no f-strings, no annotations), since a node's python3 can
be old. The protocol is described in ``imgpipe/backends/agent_script.py``.
"""

import json
import os
import subprocess
import sys
import threading


class Agent:
    """Starts wrappers on ``run``, feeds or closes their stdin, reports their output and exit."""

    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.jobs = {}
        """Running wrappers by job id; a pump thread removes its job when the wrapper ends."""
        self.pumps = []

    def say(self, data):
        with self.lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):  # imgpipe is gone: the jobs still get drained and stopped
                pass

    def pump(self, jid, proc):
        for line in proc.stdout:
            self.say(b"o " + jid + b" " + line.rstrip(b"\r\n") + b"\n")
        _, status, ru = os.wait4(proc.pid, 0)  # the wrapper and what it reaped: the job, tee
        proc.returncode = code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        self.jobs.pop(jid, None)
        close(proc)
        proc.stdout.close()
        usage = "%d %d %.3f %.3f" % (code, ru.ru_maxrss, ru.ru_utime, ru.ru_stime)
        self.say(b"x " + jid + b" " + usage.encode() + b"\n")

    def handle(self, line):
        cmd, _, rest = line.rstrip(b"\n").partition(b" ")
        jid, _, arg = rest.partition(b" ")
        if cmd == b"run":
            try:
                proc = subprocess.Popen(json.loads(arg.decode()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except (OSError, ValueError) as err:
                self.say(b"e " + jid + b" " + str(err).encode("utf-8", "replace") + b"\n")
                return
            self.jobs[jid] = proc
            t = threading.Thread(target=self.pump, args=(jid, proc))
            t.start()
            self.pumps = [p for p in self.pumps if p.is_alive()] + [t]
            return
        # One lookup: the job's pump thread may remove it at any moment (its wrapper ended)
        proc = self.jobs.get(jid) if cmd in (b"in", b"close") else None
        if proc is None:
            return
        if cmd == b"in":
            try:
                proc.stdin.write(arg + b"\n")
                proc.stdin.flush()
            except (OSError, ValueError):
                pass
        else:
            close(proc)

    def finish(self):
        """No more input: imgpipe is done, or gone. Closing each wrapper's stdin makes it stop
        its job (SIGTERM, SIGKILL after the grace); stay to drain their output until they end."""
        for proc in list(self.jobs.values()):
            close(proc)
        for t in self.pumps:
            t.join()


def close(proc):
    try:
        proc.stdin.close()
    except OSError:
        pass


def ready_line():
    """``ready <cores> <memory kB> <limited by>``: the node's capacity, from node_capacity.py,
    which is shipped ahead of this file; plain ``ready`` if it cannot be read."""
    try:
        return ("ready %d %d %s\n" % capacity()).encode()  # noqa: F821 (defined by node_capacity.py)
    except Exception:
        return b"ready\n"


def main():
    agent = Agent(sys.stdout.buffer)
    agent.say(ready_line())
    for line in sys.stdin.buffer:
        agent.handle(line)
    agent.finish()


if __name__ == "__main__":
    main()
