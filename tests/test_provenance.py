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
