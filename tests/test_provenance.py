"""The provenance record's view of a job's outputs: which FITS files this run wrote."""

from __future__ import annotations

import os
import time

from imgpipe.products import provenance


def test_outputs_are_found_when_the_file_servers_clock_is_behind(tmp_path, monkeypatch):
    """NFS sets mtimes by the file server's clock; the job's start is this machine's. With
    this machine 5 s ahead, an image written 0.5 s into the job looked 4.5 s older than
    the job, and the job incomplete: every night it ran again."""
    ahead = 5.0
    monkeypatch.setattr(provenance, "_now", lambda: time.time() + ahead)  # this machine's clock
    started = provenance._now() - 0.5  # the job started half a second ago, by this machine's clock
    old = tmp_path / "img-old-image.fits"
    old.write_bytes(b"o" * 10)
    os.utime(old, (time.time() - 600, time.time() - 600))  # left by a run ten minutes ago
    (tmp_path / "img-image.fits").write_bytes(b"x" * 100)  # written now, by the file server's clock
    offset = provenance.clock_offset(str(tmp_path))
    assert abs(offset + ahead) < 1.0
    assert provenance.fits_outputs(str(tmp_path / "img"), since=started) == []  # the old comparison
    assert provenance.fits_outputs(str(tmp_path / "img"), since=started, clock_offset=offset) == [
        {"path": "img-image.fits", "size": 100}
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imgpipe-clock-")]  # the probe is gone


def test_an_unwritable_folder_has_no_offset(tmp_path):
    assert provenance.clock_offset(str(tmp_path / "missing")) == 0.0


def test_images_being_written_by_a_live_run_are_not_run_over(tmp_path):
    """A job's in-progress record names its imgpipe process: while it lives (on this
    machine), another run does not start the same job; once it is gone, the record is
    only an unfinished one."""
    import socket
    import subprocess
    import sys

    from support.jobs import make_job

    job = make_job("localhost", ("wsclean", "-name", f"{tmp_path}/img", "a.MS"), ("a.MS",), out_dir=str(tmp_path), name="img")
    path = provenance.record_path(job.out_dir, job.name)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {**provenance.in_progress(job, None), "imgpipe_pid": other.pid}
        provenance.write(path, record)
        kind, seen = provenance.not_to_run(job)
        assert kind == provenance.BUSY and seen["imgpipe_host"] == socket.gethostname()
        assert provenance.busy_reason(job, seen).startswith(f"not run: {tmp_path}/img is being written now by another "
                                                            f"imgpipe run (pid {other.pid} on {socket.gethostname()}")
        assert provenance.not_to_run(job, force=True, replace=True)[0] == provenance.BUSY  # nothing overrides a live writer
    finally:
        other.kill()
        other.wait()
    assert provenance.not_to_run(job) is None  # its run is gone: an unfinished record, run the job
    provenance.write(path, provenance.in_progress(job, None))
    assert provenance.not_to_run(job) is None  # this very process's own record (a retry)
    elsewhere = {**provenance.in_progress(job, None), "imgpipe_host": "another-head-node"}
    provenance.write(path, elsewhere)
    assert provenance.not_to_run(job)[0] == provenance.BUSY  # another machine: taken to be alive


def test_the_same_job_finishing_in_another_run_is_waited_for_then_skipped(tmp_path):
    """The same night run twice: this run got the job's MSs when the other's WSClean ended;
    the other's record turns complete a moment later. The job waits for it and sees its
    images done (skip), instead of failing on "being written"."""
    import subprocess
    import sys
    import threading

    from imgpipe.core.results import OK, JobResult

    from support.jobs import make_job

    job = make_job("localhost", ("wsclean", "-name", f"{tmp_path}/img", "a.MS"), ("a.MS",), out_dir=str(tmp_path), name="img")
    path = provenance.record_path(job.out_dir, job.name)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        provenance.write(path, {**provenance.in_progress(job, None), "imgpipe_pid": other.pid})
        verdict = provenance.not_to_run(job)

        def finish():  # the other run, once its statistics are done
            time.sleep(1.0)
            (tmp_path / "img-image.fits").write_bytes(b"x" * 2880)
            result = JobResult(job, OK, started_at=time.time() - 5, ended_at=time.time())
            outputs = provenance.fits_outputs(job.image_prefix)
            provenance.write(path, provenance.build(result, complete=True, outputs=outputs, wsclean_version="3.1",
                                                    imgpipe_version="x", flow_run_id=None, stats=None))

        threading.Thread(target=finish).start()
        started = time.monotonic()
        after = provenance.after_the_other_run(job, verdict, force=False, replace=False, wait_s=30)
        assert after is not None and after[0] == provenance.DONE, after
        assert 0.9 < time.monotonic() - started < 10

        # another job's images (other MSs) being written: no wait, the same BUSY
        theirs = make_job("localhost", ("wsclean", "-name", f"{tmp_path}/img", "b.MS"), ("b.MS",), out_dir=str(tmp_path),
                          name="img")
        provenance.write(path, {**provenance.in_progress(theirs, None), "imgpipe_pid": other.pid})
        busy = provenance.not_to_run(job)
        started = time.monotonic()
        assert provenance.after_the_other_run(job, busy, False, False, wait_s=30) == busy
        assert time.monotonic() - started < 0.5
        # the same job still being written when the wait ends: BUSY, as before
        provenance.write(path, {**provenance.in_progress(job, None), "imgpipe_pid": other.pid})
        assert provenance.after_the_other_run(job, provenance.not_to_run(job), False, False, wait_s=1)[0] == provenance.BUSY
    finally:
        other.kill()
        other.wait()
