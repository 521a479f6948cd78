"""The end-of-run accounting: per-job rows, totals, per-node slot utilisation."""

from imgpipe.core.results import FAILED, OK, JobResult, RunSummary, format_duration

from support.jobs import make_job


def result(host, i, wall, status=OK, **kw):
    job = make_job(host, ms=(f"/d/SW0{i}.MS",), name=f"i{i}")
    return JobResult(job, status, started_at=100.0, ended_at=100.0 + wall, **kw)


def test_totals_and_node_utilisation():
    summary = RunSummary(
        [
            result("node101", 1, 10.0, cpu_s=18.0, max_rss_mb=500, exit_code=0),
            result("node101", 2, 10.0, cpu_s=2.0, max_rss_mb=900, exit_code=0),
            result("node102", 3, 5.0, FAILED, reason="exit code 1", exit_code=1, slurm_job="77"),
        ],
        wall_s=10.0,
        slots_per_node=2,
    )
    assert summary.totals() == (25.0, 20.0, 900)
    nodes = {n.host: n for n in summary.nodes()}
    assert nodes["node101"].utilisation == 1.0 and nodes["node101"].jobs == 2
    assert nodes["node102"].utilisation == 0.25
    lines = summary.lines()
    assert lines[0] == "  OK        SW01.MS @ node101 10.0s cpu 18.0s peak 500 MiB exit 0  log: /out/i1.log"
    assert lines[2].startswith("  FAILED    SW03.MS @ node102 5.0s exit 1 slurm 77 (exit code 1)")
    assert lines[3] == "  total: job time 25.0 s, cpu 20.0 s, largest peak 900 MiB"
    # both ran together, so at once their peaks add up (an upper bound of what the node held)
    assert lines[4] == "  node node101: 2 job(s), busy 20.0 s, slots busy 100% (2 slot(s) × 10.0 s), memory at once ≤ 1.4 GiB"
    assert lines[-1] == "3 job(s): 2 ok, 1 failed, in 10.0 s"
    md = summary.markdown()
    assert "| SW03.MS @ node102 | FAILED | 5.0 s |  |  |" in md
    assert "| **total** | 2 ok, 1 failed | 25.0 s | 900 MiB | |" in md
    assert "- `SW03.MS @ node102` FAILED: exit code 1 (log: `/out/i3.log`)" in md
    assert "- `SW03.MS @ node102`: exit 1, SLURM 77, log `/out/i3.log`" in md
    assert "node102 1 job(s), busy 5.0 s (25% of its slots)" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.count("|") == 6 for line in table)  # five columns: it fits the Prefect UI


def test_durations_read_as_written_in_configs():
    assert [format_duration(s) for s in (45, 90, 3600, 5400, 7261)] == ["45s", "1m30s", "1h", "1h30m", "2h1m1s"]


def test_image_statistics_in_the_table():
    from imgpipe.products.image_stats import ImageStats

    st = ImageStats("/out/i1-MFS-image.fits", 9.61, 151.0, 50.3, 0.0079, 1216.5, 301.5, 262.3, 129.8, "JY/BEAM")
    summary = RunSummary([result("n1", 1, 10.0, exit_code=0, image=st.image, stats=st)], wall_s=10.0, slots_per_node=1)
    assert summary.lines()[0] == "  OK        SW01.MS @ n1 10.0s exit 0 | image peak 9.61 rms 0.0079 DR 1216  log: /out/i1.log"
    md = summary.markdown()
    assert "| SW01.MS @ n1 | OK | 10.0 s |  | 9.61 / 0.0079 JY/BEAM |" in md
    assert "image `/out/i1-MFS-image.fits`, dynamic range 1216, beam 302×262 @ 130°\", log `/out/i1.log`" in md


def test_given_vs_used_cpu_efficiency_peak_of_its_memory_and_the_warning_above_it():
    from dataclasses import replace

    from imgpipe.core.job_resources import Given

    def given(r, cores, mem_mb):
        return replace(r, job=replace(r.job, given=Given(cores, mem_mb, "category heavy")))

    ok = given(result("n1", 1, 10.0, cpu_s=30.0, max_rss_mb=3000, exit_code=0), 4, 4096)
    over = given(result("n1", 2, 10.0, cpu_s=5.0, max_rss_mb=5000, exit_code=0), 4, 4096)
    assert ok.cpu_efficiency == 0.75 and not ok.over_memory and over.over_memory
    lines = RunSummary([ok, over], wall_s=10.0, slots_per_node=2).lines()
    assert lines[0] == "  OK        SW01.MS @ n1 10.0s cpu 30.0s (75% of 4 core(s)) peak 3000 MiB of 4.0 GiB exit 0  log: /out/i1.log"
    assert "peak 5000 MiB of 4.0 GiB (above it)" in lines[1]
    assert result("n1", 3, 10.0, cpu_s=1.0).cpu_efficiency is None  # nothing given: no share to compare with


def test_memory_at_once_counts_only_jobs_that_overlapped():
    from imgpipe.core.results import memory_high_water

    def ran(t0, t1, mb):
        return JobResult(make_job(), OK, started_at=t0, ended_at=t1, max_rss_mb=mb)

    assert memory_high_water([ran(0, 10, 500), ran(10, 20, 900), ran(5, 15, 300)]) == 1200
    assert memory_high_water([ran(0, 1, 100)]) == 100 and memory_high_water([]) is None


def test_cancelled_jobs_are_counted_as_cancelled_everywhere_the_outcome_is_said():
    """The terminal said "2 cancelled" while the report and the artifact said "2 failed"."""
    from imgpipe.core.results import CANCELLED
    from imgpipe.products.report import render

    summary = RunSummary([result("n", 1, 1.0), result("n", 2, 1.0, FAILED, reason="exit code 1"),
                          result("n", 3, 1.0, CANCELLED, reason="cancelled by Ctrl-C"),
                          result("n", 4, 1.0, CANCELLED, reason="cancelled by Ctrl-C")], wall_s=2.0)
    assert summary.counts() == "1 ok, 1 failed, 2 cancelled" and not summary.ok
    assert summary.lines()[-1] == "4 job(s): 1 ok, 1 failed, 2 cancelled, in 2.0 s"
    assert summary.markdown().startswith("**1 ok, 1 failed, 2 cancelled** in 2.0 s")
    assert "1 ok, 1 failed, 2 cancelled, 4 job(s) in 2.0 s" in render(summary, "t", "/out")


def test_the_report_says_unknown_times_as_unknown():
    """A job that never ran has no wall or CPU time: '— / —', not ' s /  s'."""
    from imgpipe.products.report import render

    never = JobResult(make_job("n", ms=("/d/SW01.MS",)), FAILED, "node unreachable: n: connection refused")
    page = render(RunSummary([never], wall_s=1.0), "t", "/out")
    assert "<th>wall / CPU</th><td>— / —</td>" in page and " s /  s" not in page
    assert "<th>peak memory</th><td>—</td>" in page
