"""The WSClean task: its node slot goes to the next job when WSClean ends, before the
image is measured and drawn (post-processing never holds a slot)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgpipe.products.fits_peak import pixel_distance

from support.markers import requires_wsclean
from support.sky import SMALL_IMAGE, SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]

TRACING_WSCLEAN = """#!/bin/bash
if [ $# -eq 0 ]; then exec wsclean; fi
echo "start $$" >> TRACE
exec wsclean "$@"
"""

# imgpipe's command line, its first image measurement held until the run's second WSClean
# has started (or 120 s have passed): NOTE then says how many had started by then.
DRIVER = """
import pathlib, sys, time
import imgpipe.products.job_outputs as job_outputs
real, trace, note = job_outputs.image_stats, pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def held(path):
    if not note.exists():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and trace.read_text().count("start") < 2:
            time.sleep(0.05)
        note.write_text(str(trace.read_text().count("start")))
    return real(path)
job_outputs.image_stats = held
from imgpipe.cli.command import main
sys.argv = ["imgpipe", *sys.argv[3:]]
main()
"""


def test_the_slot_goes_to_the_next_job_before_the_image_is_measured(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    trace, note = tmp_path / "trace", tmp_path / "note"
    wsclean = tmp_path / "tracing-wsclean"
    wsclean.write_text(TRACING_WSCLEAN.replace("TRACE", str(trace)))
    wsclean.chmod(0o755)
    cfg = write_config(f"[worker]\nmax_concurrent = 1\nwsclean = '{wsclean}'\n" + SMALL_IMAGE)
    res = subprocess.run([sys.executable, "-c", DRIVER, str(trace), str(note), str(cfg), str(a), str(b)],
                         cwd=tmp_path, env=run_imgpipe.base_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # one slot: the second WSClean started while the first job's image waited to be measured
    assert note.read_text() == "2"
    assert "2 job(s): 2 ok, 0 failed" in res.stdout
    for ms in (a, b):
        assert pixel_distance(str(tmp_path / "images" / ms.name / "img-image.fits"), SOURCE_RA, SOURCE_DEC) <= 1.0
