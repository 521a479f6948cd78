"""What a stopped WSClean leaves behind is found and removed, and nothing else is."""

from __future__ import annotations

import json
import os
import time

import pytest

from imgpipe.core.results import CANCELLED, OK, JobResult
from imgpipe.products import cleanup
from imgpipe.products.job_outputs import finish

from support.jobs import make_job
from support.markers import requires_wsclean


def test_wsclean_temporary_files_are_found_beside_the_images_and_the_ms(tmp_path):
    ms = tmp_path / "data" / "SW01.MS"
    ms.mkdir(parents=True)
    out = tmp_path / "out"
    out.mkdir()
    mine = ["img-model-I-0000-tmp.fits", "img-psf-I-0001-tmp.fits", "img-residual-I-0000-tmp.fits"]
    for name in mine + ["img-0000-dirty.fits", "other-model-I-0000-tmp.fits"]:
        (out / name).write_text("x")
    beside = ["SW01.MS-part0000-I-b0.tmp", "SW01.MS-part0000-I-b0-w.tmp", "SW01.MS-spw0-parted-meta.tmp"]
    for name in beside + ["SW02.MS-part0000-I-b0.tmp"]:
        (ms.parent / name).write_text("x")
    job = make_job("localhost", ("wsclean", "-name", f"{out}/img", str(ms) + "/"), (str(ms) + "/",), out_dir=str(out), name="img")
    found = cleanup.wsclean_temporary_files(job)
    assert found == sorted([str(ms.parent / n) for n in beside] + [str(out / n) for n in mine])
    assert cleanup.remove(found) == found
    assert sorted(p.name for p in out.iterdir()) == ["img-0000-dirty.fits", "other-model-I-0000-tmp.fits"]
    assert [p.name for p in ms.parent.iterdir() if p.is_file()] == ["SW02.MS-part0000-I-b0.tmp"]


def test_a_stopped_jobs_partial_images_are_removed_unless_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img-old-image.fits").write_text("an earlier run's")
    old = time.time() - 3600
    os.utime(out / "img-old-image.fits", (old, old))
    started = time.time()
    job = make_job("localhost", ("wsclean", "-name", f"{out}/img", "a.MS"), ("a.MS",), out_dir=str(out), name="img")
    for keep in (False, True):
        (out / "img-0000-dirty.fits").write_text("partial")
        result = JobResult(job, CANCELLED, "cancelled by Ctrl-C", started_at=started, ended_at=started + 5)
        finish(result, "3.1.0", None, lambda message: None, keep_partial=keep)
        record = json.loads((out / "img.imgpipe.json").read_text())
        assert record["partial_images"] == ("kept" if keep else "removed") and record["complete"] is False
        assert record["removed"] == ([] if keep else ["img-0000-dirty.fits"])
        assert (out / "img-0000-dirty.fits").exists() == keep and (out / "img-old-image.fits").exists()
    ok = JobResult(job, OK, "", exit_code=0, started_at=started, ended_at=started + 5)
    finish(ok, "3.1.0", None, lambda message: None)
    assert "partial_images" not in json.loads((out / "img.imgpipe.json").read_text())


@pytest.mark.prefect
def test_a_timed_out_job_leaves_no_temporary_file_and_its_record_says_what_went(run_imgpipe, fake_wsclean, tmp_path):
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("60")
    trace.with_suffix(".products").touch()  # a dirty image and a *-tmp.fits, as WSClean writes early on
    ms = tmp_path / "data" / "SW01.MS"
    ms.mkdir(parents=True)
    (ms.parent / "SW01.MS-part0000-I-b0.tmp").write_text("a reorder file")  # (as if this WSClean wrote it)
    cfg = tmp_path / "img.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\nmax_time = 2\nkill_grace = 1\n[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out'\n")
    res = run_imgpipe(cfg, ms)
    assert res.returncode == 1 and "TIMED-OUT" in res.stdout, res.stdout[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".fits") == []
    assert [p.name for p in ms.parent.iterdir() if p.is_file()] == []
    record = json.loads((out / "img.imgpipe.json").read_text())
    assert record["status"] == "timed-out" and record["partial_images"] == "removed"
    assert record["removed"] == sorted(["img-0000-dirty.fits", "img-model-I-0000-tmp.fits", str(ms.parent / "SW01.MS-part0000-I-b0.tmp")])


@pytest.mark.prefect
def test_a_failed_job_is_cleaned_as_a_stopped_one_and_a_job_that_never_started_keeps_the_earlier_record(
        run_imgpipe, fake_wsclean, tmp_path):
    """A WSClean that fails midway (a lost connection, a full disk, an error) leaves its
    *-tmp.fits and partial images: removed as for a cancelled job, and its record lists no
    -tmp.fits as a product. A job that never started (here: its env_file is gone) leaves the
    record it found as it was, log link and all."""
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("0.1")
    trace.with_suffix(".products").touch()
    trace.with_suffix(".exit").write_text("1")
    ms = tmp_path / "data" / "SW01.MS"
    ms.mkdir(parents=True)
    env_file = tmp_path / "env.sh"
    env_file.write_text("true\n")
    cfg = tmp_path / "img.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\nenv_file = '{env_file}'\n"
                   f"[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out'\n")
    res = run_imgpipe(cfg, ms)
    assert res.returncode == 1 and "FAILED" in res.stdout, res.stdout[-2000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".fits") == []
    record = json.loads((out / "img.imgpipe.json").read_text())
    assert record["status"] == "failed" and record["partial_images"] == "removed"
    assert record["removed"] == ["img-0000-dirty.fits", "img-model-I-0000-tmp.fits"]
    assert not any(o["path"].endswith("-tmp.fits") for o in record["outputs"])

    earlier = (out / "img.imgpipe.json").read_text()
    env_file.unlink()
    again = run_imgpipe(cfg, ms)
    assert again.returncode == 1 and "cannot source the env_file" in again.stdout, again.stdout[-2000:]
    assert (out / "img.imgpipe.json").read_text() == earlier


def _can_mount_tmpfs(folder) -> bool:
    import subprocess

    res = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs '{folder}'"],
                         capture_output=True, timeout=30)
    return res.returncode == 0


@requires_wsclean
@pytest.mark.prefect  # (the run's embedded Prefect server)
def test_a_full_disk_says_so_and_leaves_only_the_record(ms_copy, write_config, tmp_path, prefect_home):
    """The out-dir on a 6 MiB file system (a tmpfs in a mount namespace of the test's own)
    and 4 MiB images: WSClean's write fails. The reason says the disk is full, where and
    how full (not CFITSIO's words alone), no image or *-tmp.fits is left, and the record
    lists no output."""
    import shutil
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    if shutil.which("unshare") is None or not _can_mount_tmpfs(out):
        pytest.skip("cannot mount a tmpfs in a mount namespace here (needs root or user namespaces)")
    (ms,) = ms_copy("SW01.MS")
    cfg = write_config(f"[wsclean]\nname = 'img'\nout-dir = '{out}'\nsize = '1024 1024'\nscale = '0.5amin'\n"
                       "niter = 100\ndata-column = 'DATA'\n")
    script = (f"mount -t tmpfs -o size=6m tmpfs '{out}' && '{sys.executable}' -m imgpipe '{cfg}' '{ms}'; rc=$?; "
              f"echo @record; cat '{out}/img.imgpipe.json'; echo @files; ls '{out}'; exit $rc")
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "XDG_CACHE_HOME": str(prefect_home / "cache"), "CI": "true"}
    env.pop("PREFECT_API_URL", None)
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    said, _, rest = res.stdout.partition("@record\n")
    record_text, _, listing = rest.partition("@files\n")
    record = json.loads(record_text)
    assert record["reason"].startswith(f"no space left on device: the file system mounted at {out} has "), record["reason"]
    assert " of 6.0 MiB (exit code 255: " in record["reason"]
    assert record["outputs"] == [] and record["complete"] is False and record["partial_images"] == "removed"
    assert sorted(listing.split()) == ["img.imgpipe.json", "img.log", *sorted(n for n in listing.split() if n.startswith("report"))]
    assert "no space left on device: the file system mounted at" in said + res.stderr
