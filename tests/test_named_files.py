"""named(): the files glob would find for one job's names, without compiling a pattern."""

from __future__ import annotations

import glob

import pytest

from imgpipe.products.named_files import named

NAMES = ["img-MFS-image.fits", "img-0000-image.fits", "img-image.fits", "img-MFS-residual.fits", "img.fits",
         "img-x-tmp.fits", "img--tmp.fits", "imgA-MFS-image.fits", "other-MFS-image.fits", "[odd]*?-image.fits",
         "[odd]*?-MFS-image.fits", "SW01.MS-part0000-I-b0.tmp", "SW01.MS-spw0-parted-meta.tmp", "SW01.MS-part.tmp"]


@pytest.mark.parametrize("base, start, end", [
    ("img", "-", "image.fits"), ("img", "-", ".fits"), ("img", "-", "-tmp.fits"), ("[odd]*?", "-", "image.fits"),
    ("SW01.MS", "-part", ".tmp"), ("SW01.MS", "-spw", "-parted-meta.tmp"), ("nothing", "-", ".fits"),
])
def test_named_finds_what_glob_finds(tmp_path, base, start, end):
    for name in NAMES:
        (tmp_path / name).write_text("x")
    prefix = str(tmp_path / base)
    assert named(prefix, start, end) == sorted(glob.glob(glob.escape(prefix) + start + "*" + end))


def test_a_missing_folder_has_no_files(tmp_path):
    assert named(str(tmp_path / "absent" / "img"), "-", ".fits") == []


def test_a_bare_name_is_looked_for_in_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "img-image.fits").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert named("img", "-", "image.fits") == ["img-image.fits"]
