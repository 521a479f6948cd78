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
