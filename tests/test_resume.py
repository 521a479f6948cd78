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
    # the flow's time, and the whole command's beside it (issue 45: 16: 'in 0.1 s' for a 9 s command)
    assert re.search(r"2 job\(s\): 2 ok \(2 skipped: done before\), 0 failed, in [\d.]+ s \(the command: [\d.]+ s, "
                     r"Prefect's start included\)", second.stdout), second.stdout
    assert image.stat().st_mtime_ns == mtime  # WSClean did not run

    # a deleted image, or a changed config, means the job is not done
    (tmp_path / "images" / "SW02.MS" / "img-psf.fits").unlink()
    third = run_imgpipe(cfg, a, b)
    assert status_of(third.stdout) == ["SKIPPED", "OK"]
    # imaged alone, the job left is given the whole node, not half of it (issue 45: 11)
    assert "1/2 of localhost" not in third.stdout + third.stderr and "all of localhost" in third.stdout + third.stderr
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
    assert re.search(r"^  FAILED\s+SW01.MS @ localhost .*cannot write the job's record .*img.imgpipe.json: Is a directory", res.stdout, re.M), res.stdout
    assert re.search(r"^  OK\s+SW02.MS", res.stdout, re.M)
    assert not (tmp_path / "images" / "SW01.MS" / "img-image.fits").exists()  # WSClean did not run over it
    assert "Traceback" not in res.stdout + res.stderr


NIGHTS_DH = """
[data_level_path]
L2 = '{root}/%OBS_ID%'
[spectral_windows]
SW01 = [1, 1]
[obs_ids]
'20231201_NT04' = ['localhost']
'20231202_NT04' = ['localhost']
"""


def two_nights(tmp_path, sim_dir, out_dir: str):
    import hashlib
    import shutil

    for night in ("20231201_NT04", "20231202_NT04"):
        shutil.copytree(sim_dir / "SW01.MS", tmp_path / "data" / night / "SW01.MS")
    (tmp_path / "dh.toml").write_text(NIGHTS_DH.format(root=tmp_path / "data"))
    cfg = tmp_path / "nights.toml"
    cfg.write_text("[data_handler]\nconfig_file = 'dh.toml'\n" + CONFIG.replace("'img'", "'$sw$'").replace("images/$ms_basename$", out_dir))

    def md5(path):
        return hashlib.md5(path.read_bytes()).hexdigest()

    return cfg, md5


@pytest.mark.parametrize("order", ["one night first", "both nights first"])
def test_a_job_never_silently_replaces_another_job_s_images(run_imgpipe, sim_dir, tmp_path, order):
    """Same out-dir/name, other MSs: the one-night image and the two-night image of SW01."""
    cfg, md5 = two_nights(tmp_path, sim_dir, "images/$sw$")
    one_night, both = ["20231202_NT04", "--combine"], ["2023120*", "--combine", "--combine_obs_ids"]
    first, second = (one_night, both) if order == "one night first" else (both, one_night)
    image = tmp_path / "images" / "SW01" / "SW01-image.fits"
    res = run_imgpipe(cfg, *first)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    before = md5(image)
    dry = run_imgpipe(cfg, *second, "--dry-run")
    assert "# would be refused: " in dry.stdout, dry.stdout  # the plan says so first
    res = run_imgpipe(cfg, *second)
    assert res.returncode == 1, res.stdout[-3000:]
    n_theirs, n_ours = (1, 2) if order == "one night first" else (2, 1)
    assert re.search(rf"^  FAILED +SW01 .*\(refused: {image.parent}/SW01 holds the images of SW01( 20231202_NT04)? "
                     rf"\({n_theirs} MS, complete, .*\), not of this job \({n_ours} MS\): .*--replace", res.stdout, re.M), res.stdout
    assert md5(image) == before  # untouched
    replaced = run_imgpipe(cfg, *second, "--replace")
    assert replaced.returncode == 0, replaced.stdout[-3000:]
    record = json.loads((tmp_path / "images" / "SW01" / "SW01.imgpipe.json").read_text())
    assert len(record["ms"]) == n_ours and record["complete"] is True


def test_obs_id_of_a_job_over_several_nights_is_never_a_single_night(run_imgpipe, sim_dir, tmp_path):
    """The nightly example's layout: out-dir '$obs_id$', run both ways, in any order: nothing lost."""
    cfg, md5 = two_nights(tmp_path, sim_dir, "images/$obs_id$")
    deep = run_imgpipe(cfg, "2023120*", "--combine", "--combine_obs_ids")
    nightly = run_imgpipe(cfg, "2023120*", "--combine")
    assert deep.returncode == 0 and nightly.returncode == 0, deep.stdout[-2000:] + nightly.stdout[-2000:]
    folders = sorted(p.parent.name for p in (tmp_path / "images").glob("*/SW01-image.fits"))
    assert folders == ["20231201_NT04", "20231201_NT04-20231202_NT04", "20231202_NT04"]
    # both runs say where to look, and the place does not move with the set of jobs
    for res in (deep, nightly):
        assert "View at http" not in res.stdout + res.stderr  # a link to the embedded server, gone by now
        assert f"images under: {tmp_path}/images\n" in res.stdout
        assert re.search(rf"^report: {tmp_path}/images/report-\d{{8}}T\d{{6}}\.html$", res.stdout, re.M), res.stdout[-1500:]
    assert (tmp_path / "images" / "report.html").is_file()
