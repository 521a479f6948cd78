"""orchestration/console_relay: a console whose reader is gone breaks nothing."""

import subprocess
import sys

CHILD = """
import sys, time
from imgpipe.orchestration.console_relay import relay_console
relay_console()
print("first", flush=True)
time.sleep(1.0)  # the reader goes meanwhile
for i in range(2000):
    print("line", i, "x" * 100, flush=True)
    sys.stderr.write("err\\n"); sys.stderr.flush()
open(sys.argv[1], "w").write("went on")
"""


def test_writes_go_on_after_the_reader_died(tmp_path):
    marker = tmp_path / "done"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline() == b"first\n"  # passed on while read
    child.stdout.close()  # the reader dies
    child.stderr.close()
    assert child.wait(timeout=60) == 0
    assert marker.read_text() == "went on"


def test_without_the_relay_the_same_writes_fail():
    """(The test above would pass without its subject otherwise.)"""
    code = CHILD.replace("relay_console()", "pass")
    child = subprocess.Popen([sys.executable, "-c", code, "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline() == b"first\n"
    child.stdout.close()
    child.stderr.close()
    assert child.wait(timeout=60) != 0


def test_the_last_lines_reach_a_reader_that_stays():
    code = ("from imgpipe.orchestration.console_relay import relay_console\nrelay_console()\n"
            "import sys\nsys.stdout.write('a' * 200000 + 'END')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).stdout
    assert out.endswith(b"END") and len(out) == 200003
