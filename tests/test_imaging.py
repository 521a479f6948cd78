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
