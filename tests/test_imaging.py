"""End to end: the real CLI, the embedded Prefect server and the real WSClean.

The science check: the brightest pixel of each image lies within one pixel of the
simulated source (astropy WCS).
"""

import json

import pytest

from imgpipe.products.fits_peak import pixel_distance

from support.markers import requires_wsclean
from support.sky import SMALL_IMAGE, SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]

CONFIG = "\n[worker]\nmax_concurrent = 2" + SMALL_IMAGE


def assert_source_found(image):
    assert image.exists(), image
    assert pixel_distance(str(image), SOURCE_RA, SOURCE_DEC) <= 1.0


def test_one_job_per_ms_with_channels_out_all(run_imgpipe, write_config, ms_copy, tmp_path):
    a, c = ms_copy("SW01.MS", "SW03.MS")
    cfg = write_config(CONFIG + "channels-out = 'all'\njoin-channels = true\n")
    res = run_imgpipe(cfg, a, c, "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stdout + res.stderr
    out_a, out_c = tmp_path / "images" / "SW01.MS", tmp_path / "images" / "SW03.MS"
    for out, n_chan in ((out_a, 4), (out_c, 3)):
        assert sorted(p.name for p in out.glob("img-0*-image.fits")) == [f"img-{i:04d}-image.fits" for i in range(n_chan)]
        assert_source_found(out / "img-MFS-image.fits")
        for i in range(n_chan):
            assert_source_found(out / f"img-{i:04d}-image.fits")
        log = (out / "img.log").read_text()
        assert "WSClean version 3" in log and "Writing restored image" in log or "Writing" in log
    assert "2 job(s): 2 ok, 0 failed" in res.stdout
    assert f"log: {out_a}/img.log" in res.stdout
    assert "Beginning flow run" in res.stderr and "wsclean SW01.MS @ localhost" in res.stderr
    jobs = json.loads((tmp_path / "plan.json").read_text())["jobs"]
    assert [j["argv"][j["argv"].index("-channels-out") + 1] for j in jobs] == ["4", "3"]


def test_combine_two_ms_in_one_call(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    res = run_imgpipe(write_config(CONFIG), a, b, "--combine")
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "images" / "SW02.MS"  # tokens come from the last MS
    assert_source_found(out / "img-image.fits")
    log = (out / "img.log").read_text()
    assert str(a) in log and str(b) in log  # both MSs were read by one WSClean
    assert "1 job(s): 1 ok, 0 failed" in res.stdout
    # the report says how the MSs were grouped (issue 45: 16)
    report = next((tmp_path / "images").glob("report-*.html")).read_text()
    title = report.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith("imgpipe run imgpipe.toml SW01.MS SW02.MS") and title.endswith(" · -c: every MS in one job"), title


def test_real_telescope_mss_and_a_failing_job(run_imgpipe, write_config, shared_ms, tmp_path):
    lwa = shared_ms("lwasv_4ant_4ch.ms")
    # uncalibrated telescope data: DATA, not the default CORRECTED_DATA
    res = run_imgpipe(write_config(CONFIG.replace("1amin", "30amin") + "channels-out = 'all'\ndata-column = 'DATA'\n"), lwa)
    assert res.returncode == 0, res.stdout + res.stderr
    out = tmp_path / "images" / "lwasv_4ant_4ch.ms"
    assert sorted(p.name for p in out.glob("img-*-image.fits")) == [f"img-{i:04d}-image.fits" for i in range(4)] + ["img-MFS-image.fits"]

    # The real VLA MS has an empty SPECTRAL_WINDOW table: WSClean crashes on it. That
    # job fails with the reason, the other job still runs, and the exit code says so.
    vla = shared_ms("vla_J1008+0730_64ch.ms")
    res = run_imgpipe(write_config(CONFIG.replace("img'", "all'") + "data-column = 'DATA'\n"), vla, lwa)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "2 job(s): 1 ok, 1 failed" in res.stdout
    failed = [line for line in res.stdout.splitlines() if line.strip().startswith("FAILED")]
    # its line as it ended, and once more in the summary, which lists the jobs that did not end well
    assert len(failed) == 2 and failed[0] == failed[1] and "vla_J1008+0730_64ch.ms" in failed[0]
    assert "  1 job(s) did not end well:\n" + failed[1] in res.stdout
    assert "killed by SIG" in failed[0] or "exit code" in failed[0]
    assert (out / "all-image.fits").exists()
    assert "Traceback" not in res.stdout


def test_a_damaged_ms_is_said_to_be_damaged(run_imgpipe, write_config, ms_copy, tmp_path):
    """Issue 45: 14. A truncated table.f0 (a copy cut short): casacore's 'is not writable'
    comes after the words a radio astronomer needs; the other MS is imaged."""
    a, b = ms_copy("SW01.MS", "SW02.MS")
    with open(a / "table.f0", "r+b") as f:
        f.truncate(1000)
    res = run_imgpipe(write_config(CONFIG), a, b)
    assert res.returncode == 1 and "2 job(s): 1 ok, 1 failed" in res.stdout, res.stdout + res.stderr[-3000:]
    failed = next(line for line in res.stdout.splitlines() if line.strip().startswith("FAILED"))
    assert f"(Measurement Set {a} could not be read and may be damaged: " in failed, failed
    assert f"{a}/table.f0 is not writable (exit code " in failed, failed


def _pixels(image):
    from astropy.io import fits

    return fits.getdata(str(image)).squeeze()


def _noise_rms(image) -> float:
    return float(_pixels(image).std())


@pytest.mark.parametrize("temp", ["[worker] temp_dir", "[wsclean] temp-dir"])
def test_a_deep_image_of_same_named_mss_holds_every_night(run_imgpipe, write_config, tmp_path, temp):
    """Three nights' SW01.MS, one --combine job with a temp dir: WSClean names its reorder
    files after the MS's base name there, so without imgpipe's links the deep image was the
    last night alone (3.1) or aborted. Noise-only nights: the deep image's noise is a night's
    ÷ √3, and it is none of the nights' images."""
    from imgpipe.demo.simulate import make_ms

    nights = []
    for i in (1, 2, 3):
        (tmp_path / f"night{i}").mkdir()
        nights.append(make_ms(str(tmp_path / f"night{i}" / "SW01.MS"), [], freqs_hz=[60e6, 61e6, 62e6, 63e6],
                              n_ant=8, n_time=32, noise_jy=5.0, seed=10 * i))
    scratch = tmp_path / "scratch"
    worker = "[worker]\nmax_concurrent = 2\n"
    wsclean = ("[wsclean]\nname = 'img'\nout-dir = '$ms_in$/../OUT'\nsize = '128 128'\nscale = '1amin'\nniter = 0\n"
               "channels-out = 2\nj = 1\n")  # two output channels: WSClean reorders into the temp dir
    if temp == "[worker] temp_dir":
        worker += f"temp_dir = '{scratch}'\ntemp_min_free = '1MB'\n"
    else:
        wsclean += f"temp-dir = '{scratch}'\n"
        worker += "temp_min_free = '1MB'\n"
    singles = run_imgpipe(write_config(worker + wsclean.replace("OUT", "single"), "single.toml"), *nights)
    assert singles.returncode == 0, singles.stdout + singles.stderr
    deep = run_imgpipe(write_config(worker + wsclean.replace("OUT", "deep"), "deep.toml"), *nights, "--combine")
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "1 job(s): 1 ok, 0 failed" in deep.stdout

    deep_image = tmp_path / "night3" / "deep" / "img-MFS-image.fits"
    single_images = [tmp_path / f"night{i}" / "single" / "img-MFS-image.fits" for i in (1, 2, 3)]
    single_rms = [_noise_rms(image) for image in single_images]
    expected = sum(single_rms) / 3 / 3 ** 0.5
    assert abs(_noise_rms(deep_image) / expected - 1) < 0.15, (_noise_rms(deep_image), single_rms)
    deep_pixels = _pixels(deep_image)
    for image in single_images:  # none of the nights alone
        assert abs(deep_pixels - _pixels(image)).max() > 0.1 * deep_pixels.std()
    log = (tmp_path / "night3" / "deep" / "img.log").read_text()
    assert all(f"-SW01.MS -> {night}" in log for night in nights)  # the links, said in the log
    assert not list(scratch.iterdir())  # every scratch folder (and its links) removed
    record = json.loads((tmp_path / "night3" / "deep" / "img.imgpipe.json").read_text())
    assert record["ms"] == nights
