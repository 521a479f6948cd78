"""report.html: self-contained, and it renders (headless Chromium from Debian)."""

import re
import shutil
import subprocess

import pytest

from support.markers import requires_wsclean

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

CONFIG = """
[wsclean]
name = 'img'
out-dir = 'night/$ms_basename$'
size = '128 128'
scale = '1amin'
niter = 100
j = 1
"""


@requires_wsclean
@pytest.mark.prefect
def test_report_lists_every_job_and_renders_in_chromium(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    res = run_imgpipe(write_config(CONFIG), a, b)
    assert res.returncode == 0, res.stderr[-3000:]
    report = tmp_path / "night" / "report.html"
    text = report.read_text()
    assert len(list((tmp_path / "night").glob("report-*T*.html"))) == 1  # the per-run copy
    assert text.count("<img alt='quick-look of SW0") == 2 and text.count("src='data:image/png;base64,") == 2
    assert "href='SW01.MS/img.log'" in text and "href='SW02.MS/img.log'" in text
    assert f"wsclean -name {tmp_path}/night/SW01.MS/img" in text
    assert re.search(r"<th>dynamic range</th><td>\d+</td>", text)
    assert "src='http" not in text and "<link" not in text  # nothing fetched from elsewhere
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test installs it): rendering not checked")
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,900", f"--screenshot={shot}",
         report.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    # the quick-looks (inferno colour map: dark purples, oranges) are on the page, not blank boxes
    purple = (pixels[..., 0] > 0.2) & (pixels[..., 2] > 0.25) & (pixels[..., 1] < 0.15)
    assert purple.sum() > 20_000, purple.sum()


def test_a_run_that_only_skipped_or_had_nothing_keeps_the_last_real_report(tmp_path):
    """report.html is the last run that ran a job: a duplicate night (all skipped) or a
    quiet night writes its own dated report only."""
    import time

    from imgpipe.core.results import OK, SKIPPED, JobResult, RunSummary
    from imgpipe.products.report import write_report

    from support.jobs import make_job

    out = tmp_path / "images" / "SW01"
    out.mkdir(parents=True)
    job = make_job("localhost", ("wsclean", "-name", f"{out}/img", "a.MS"), ("a.MS",), out_dir=str(out), name="img")
    first = write_report(RunSummary([JobResult(job, OK)], 1.0), "the night")
    latest = out / "report.html"
    assert latest.read_text() == open(first).read()
    time.sleep(1.1)  # (reports are named by the second)
    second = write_report(RunSummary([JobResult(job, SKIPPED, reason="done before")], 0.1), "the duplicate")
    assert second != first and "the duplicate" in open(second).read()
    assert latest.read_text() == open(first).read()


def test_a_night_named_by_date_has_its_own_report_and_an_index(tmp_path):
    """report-<night>.html is the night's (a duplicate that only skipped does not replace
    it); reports.html lists every report, newest first."""
    from imgpipe.core.results import OK, SKIPPED, JobResult, RunSummary
    from imgpipe.products.report import write_report

    from support.jobs import make_job

    out = tmp_path / "images" / "SW01"
    out.mkdir(parents=True)
    job = make_job("localhost", ("wsclean", "-name", f"{out}/img", "a.MS"), ("a.MS",), out_dir=str(out), name="img")
    night = write_report(RunSummary([JobResult(job, OK)], 1.0, night="20261206"), "night 20261206: the run")
    assert night == str(out / "report-20261206.html")
    first = (out / "report-20261206.html").read_text()
    duplicate = write_report(RunSummary([JobResult(job, SKIPPED, reason="done before")], 0.1, night="20261206"), "dup")
    assert duplicate == night and (out / "report-20261206.html").read_text() == first
    quiet = write_report(RunSummary([], 0.1, output_root=str(out), night="20261207"), "night 20261207: quiet")
    assert quiet == str(out / "report-20261207.html")
    assert (out / "report.html").read_text() == first  # the last night that ran a job
    index = (out / "reports.html").read_text()
    assert index.index("report-20261207.html") < index.index("report-20261206.html")
    assert "night 20261206: the run" in index and "night 20261207: quiet" in index
