"""Re-running a night: finished jobs are skipped, --force redoes them, a crash is never 'done';
and the provenance record beside each image (real WSClean, embedded Prefect)."""

import json
import os
import re

import pytest

from support.markers import requires_wsclean
from support.sky import SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]

CONFIG = """
[wsclean]
name = 'img'
out-dir = 'images/$ms_basename$'
size = '128 128'
scale = '1amin'
niter = 100
j = 1
"""


def status_of(stdout: str) -> list[str]:
    return re.findall(r"^  (\S+)\s+SW0", stdout, re.M)


def test_resume_skips_complete_jobs_and_force_redoes_them(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config(CONFIG)
    first = run_imgpipe(cfg, a, b)
    assert first.returncode == 0, first.stderr[-3000:]
    image = tmp_path / "images" / "SW01.MS" / "img-image.fits"
    record = json.loads((tmp_path / "images" / "SW01.MS" / "img.imgpipe.json").read_text())
    # provenance: how the image was made
    assert record["complete"] is True and record["status"] == "ok" and record["exit_code"] == 0
    assert record["argv"][0] == "wsclean" and record["argv"][-1] == str(a) and record["ms"] == [str(a)]
    assert record["host"] == "localhost" and record["wsclean_version"] == "3.1.0"
    assert record["imgpipe_version"] and re.match(r"[0-9a-f-]{36}$", record["prefect_flow_run_id"])
    assert record["started_at"] < record["ended_at"] and record["duration_s"] > 0
    assert {"img-image.fits", "img-psf.fits"} <= {o["path"] for o in record["outputs"]}
    stats = record["stats"]
    assert stats["image"] == str(image) and stats["peak"] > 20 * stats["rms"] > 0 and stats["beam_major_arcsec"] > 0
    assert abs(stats["peak_ra_deg"] - SOURCE_RA) < 0.1 and abs(stats["peak_dec_deg"] - SOURCE_DEC) < 0.1
    assert (tmp_path / "images" / "SW01.MS" / "img-image.png").stat().st_size > 10_000  # the quick-look
    assert "| image peak " in first.stdout

    mtime = image.stat().st_mtime_ns
    dry = run_imgpipe(cfg, a, b, "--dry-run")
    assert dry.stdout.count("# done before: would be skipped") == 2
    second = run_imgpipe(cfg, a, b)
    assert second.returncode == 0 and status_of(second.stdout) == ["SKIPPED", "SKIPPED"], second.stdout
    assert "2 job(s): 2 ok (2 skipped: done before)" in second.stdout
    assert image.stat().st_mtime_ns == mtime  # WSClean did not run

    # a deleted image, or a changed config, means the job is not done
    (tmp_path / "images" / "SW02.MS" / "img-psf.fits").unlink()
    third = run_imgpipe(cfg, a, b)
    assert status_of(third.stdout) == ["SKIPPED", "OK"]
    forced = run_imgpipe(cfg, a, b, "--force")
    assert status_of(forced.stdout) == ["OK", "OK"] and image.stat().st_mtime_ns != mtime
    changed = run_imgpipe(write_config(CONFIG + "mgain = 0.8\n"), a)
    assert status_of(changed.stdout) == ["OK"]


def test_a_job_that_crashed_half_way_is_not_done(run_imgpipe, write_config, ms_copy, tmp_path):
    """A WSClean that writes an image and then dies leaves no complete record: the next run redoes it."""
    (a,) = ms_copy("SW01.MS")
    crash = tmp_path / "crashing-wsclean"
    crash.write_text(
        '#!/bin/bash\nif [ $# -eq 0 ]; then exec wsclean; fi\n'
        'wsclean "$@" > /dev/null\nkill -SEGV $$\n'  # the images are written, then a crash
    )
    crash.chmod(0o755)
    cfg = write_config("[worker]\nwsclean = '" + str(crash) + "'\n" + CONFIG)
    res = run_imgpipe(cfg, a)
    assert res.returncode == 1 and "killed by SIGSEGV" in res.stdout
    record = json.loads((tmp_path / "images" / "SW01.MS" / "img.imgpipe.json").read_text())
    assert record["complete"] is False and record["status"] == "failed" and record["exit_code"] == -11
    again = run_imgpipe(write_config(CONFIG.replace("[wsclean]", "[worker]\nwsclean = 'wsclean'\n[wsclean]")), a)
    assert status_of(again.stdout) == ["OK"]
    assert os.path.exists(tmp_path / "images" / "SW01.MS" / "img-image.fits")


def test_a_record_that_cannot_be_removed_fails_that_job_only_without_a_traceback(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    blocked = tmp_path / "images" / "SW01.MS" / "img.imgpipe.json"
    (blocked / "x").mkdir(parents=True)  # (a directory: even root cannot unlink it)
    res = run_imgpipe(write_config(CONFIG), a, b, "--force")
    assert res.returncode == 1, res.stderr[-3000:]
    assert re.search(r"^  FAILED\s+SW01.MS @ localhost .*cannot remove the earlier run's record .*img.imgpipe.json: Is a directory", res.stdout, re.M), res.stdout
    assert re.search(r"^  OK\s+SW02.MS", res.stdout, re.M)
    assert not (tmp_path / "images" / "SW01.MS" / "img-image.fits").exists()  # WSClean did not run over it
    assert "Traceback" not in res.stdout + res.stderr
