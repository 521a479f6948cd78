"""What became of each job, and the end-of-run summary."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from typing import Any

from imgpipe.core.job_resources import size_text
from imgpipe.core.plan import Job

OK, FAILED, CANCELLED, TIMED_OUT, SKIPPED = "ok", "failed", "cancelled", "timed-out", "skipped"
NO_DATA_YET = "no data yet"
"""How the reason of a job skipped because its MS is not (yet) on its node begins."""


def format_duration(seconds: float) -> str:
    """``90`` → ``1m30s``, ``7200`` → ``2h``: how max_time is written in configs."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")
    return out


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``killed by signal SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


OOM_NEAR = 0.9
"""A job killed by SIGKILL with its peak above this fraction of the memory it was given ran out of it."""

OOM_ADVICE = ("give it more memory ([worker.resources] category with more mem, or a lower max_concurrent) or "
              "make it smaller (size, channels-out, fewer MSs per job)")


def name_out_of_memory(result: "JobResult") -> "JobResult":
    """A job that died for lack of memory, said so: ``out of memory (peak 38.2 GiB of 40.0 GiB
    given): killed by the kernel's OOM killer; ...`` with what to change. Told from another
    SIGKILL by the node's count of OOM kills (the wrapper reads it), or by a peak near the
    memory the job was given (a kill by a batch system's own memory watch)."""
    if result.status != FAILED or result.exit_code != -signal.SIGKILL:
        return result
    given, peak = result.job.given, result.max_rss_mb
    near = given is not None and peak is not None and peak >= OOM_NEAR * given.mem_mb
    if not (result.oom_killed or near):
        return result
    of = f" of {size_text(given.mem_mb)} given" if given is not None else ""
    figures = f" (peak {size_text(peak)}{of})" if peak is not None else (f" ({size_text(given.mem_mb)} given)" if given else "")
    how = "killed by the kernel's OOM killer" if result.oom_killed else "killed by SIGKILL at its memory limit"
    return replace(result, reason=f"out of memory{figures}: {how}; {OOM_ADVICE}", oom_killed=True)


def name_damaged_ms(result: "JobResult") -> "JobResult":
    """A job whose WSClean stopped on casacore's words about a file inside one of its MSs
    (a truncated ``table.f0`` reads as ``... table.f0 is not writable``), said so:
    ``Measurement Set X could not be read and may be damaged: <casacore's words> (exit code 255)``."""
    if result.status != FAILED or not result.exit_code or result.exit_code < 0:
        return result
    exit_text = describe_exit(result.exit_code)
    if not result.reason.startswith(exit_text + ": "):
        return result
    words = result.reason[len(exit_text) + 2:].lstrip("+> ").strip()
    given = {link: ms for link, ms in result.job.ms_links}  # (WSClean names the link it was given)
    for path in (*result.job.ms, *given):
        if f"{path.rstrip('/')}/" in words:
            ms = given.get(path, path)
            return replace(result, reason=f"Measurement Set {ms} could not be read and may be damaged: {words} ({exit_text})")
    return result


@dataclass(frozen=True)
class JobResult:
    """Outcome and cost of one job."""

    job: Job
    status: str
    reason: str = ""
    """Why it failed ("exit code 1", "killed by SIGKILL", "cannot start: ...")."""
    exit_code: int | None = None
    started_at: float | None = None
    """Unix time the WSClean process started (None: it never started)."""
    ended_at: float | None = None
    cpu_s: float | None = None
    """User + system CPU seconds of the job's process."""
    max_rss_mb: float | None = None
    """Peak resident memory of the job's largest process (MiB); None where not measured (SSH)."""
    pid: int | None = None
    """PID (and process group) of WSClean on its node; None: it never started."""
    connection_error: bool = False
    """The node could not be reached or the connection was lost (see ``reason``)."""
    maybe_started: bool = False
    """The connection was lost after the command was sent, before WSClean was seen to start:
    it may be running, so the job must not be retried (two copies could write the same images)."""
    attempt: int = 1
    """1 for the first try, 2 for the first retry, ..."""
    slurm_job: str | None = None
    """SLURM job (or step) id, for jobs run through SLURM."""
    oom_killed: bool = False
    """Killed by the kernel's OOM killer (see ``name_out_of_memory``)."""
    memory_estimate_mib: float | None = None
    """Its expected peak (``core.memory_estimate``), worked out once as it started."""
    image: str | None = None
    """The main FITS image (MFS image when there are several channels)."""
    stats: Any = None
    """ImageStats of ``image`` (peak, rms, dynamic range, beam): ``products.image_stats``,
    a layer the core does not import."""
    quicklook: str | None = None
    """PNG of ``image`` next to it."""

    @property
    def ok(self) -> bool:
        """Succeeded now, or earlier (skipped: its images are complete)."""
        return self.status in (OK, SKIPPED)

    @property
    def no_data(self) -> bool:
        """Skipped because its MS is not (yet) on its node: nothing made, nothing failed."""
        return self.status == SKIPPED and self.reason.startswith(NO_DATA_YET)

    @property
    def wall_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time / (wall time × the cores it was given): 1.0 = every given core busy all along."""
        given, wall = self.job.given, self.wall_s
        if given is None or self.cpu_s is None or not wall or wall <= 0:
            return None
        return self.cpu_s / (wall * given.cores)

    @property
    def over_memory(self) -> bool:
        """Its peak went above the memory it was given (the original pool's warning)."""
        return self.job.given is not None and self.max_rss_mb is not None and self.max_rss_mb > self.job.given.mem_mb


def _beam(stats) -> str:
    if stats is None or stats.beam_major_arcsec is None:
        return ""
    return f"{stats.beam_major_arcsec:.0f}×{stats.beam_minor_arcsec:.0f} @ {stats.beam_pa_deg:.0f}°"


def job_line(r: JobResult, width: int | None = None) -> str:
    """One job's line: state, label, time and memory, reason, image statistics, log.
    ``width``: a terminal's, for a line that fits it (wall time and peak memory only, the
    log only for a job that did not end ok, cut with "…"); the run's summary and a log
    file get the whole line."""
    if width is not None:
        return _short_line(r, width)
    cost, given = "", r.job.given
    if r.wall_s is not None:
        cost = f" {r.wall_s:.1f}s"
        if r.cpu_s is not None:
            cost += f" cpu {r.cpu_s:.1f}s"
            if r.cpu_efficiency is not None and given is not None:
                cost += f" ({r.cpu_efficiency:.0%} of {given.cores} core(s))"
        if r.max_rss_mb is not None:
            cost += f" peak {r.max_rss_mb:.0f} MiB"
            if given is not None:
                cost += f" of {size_text(given.mem_mb)}" + (" (above it)" if r.over_memory else "")
    if r.exit_code is not None:
        cost += f" exit {r.exit_code}"
    if r.slurm_job:
        cost += f" slurm {r.slurm_job}"
    why = f" ({r.reason})" if r.reason else ""
    return f"  {r.status.upper():9s} {r.job.label}{cost}{why}{_image_text(r, ' | image peak')}  log: {r.job.log_path}"


def _image_text(r: JobResult, lead: str) -> str:
    """``<lead> 9.514 rms 0.00749 DR 1270``: the image's figures, or nothing."""
    st = r.stats
    if st is None:
        return ""
    return f"{lead} {st.peak:.4g} rms {st.rms:.3g}" + (f" DR {st.dynamic_range:.0f}" if st.dynamic_range else "")


def _short_line(r: JobResult, width: int) -> str:
    cost = "" if r.wall_s is None else f" {r.wall_s:.1f}s" if r.wall_s < 60 else f" {format_duration(r.wall_s)}"
    cost += f" peak {size_text(r.max_rss_mb)}" if r.max_rss_mb is not None else ""
    why = f" ({r.reason})" if r.reason else ""
    log = "" if r.ok else f"  log: {r.job.log_path}"
    line = f"  {r.status.upper():9s} {r.job.label}{cost}{why}{_image_text(r, ' | peak')}{log}"
    return line if len(line) <= width else line[:max(1, width - 1)] + "…"


@dataclass
class NodeUsage:
    """What one node did in a run."""

    host: str
    jobs: int
    busy_s: float
    """Sum of the wall times of its jobs."""
    utilisation: float | None
    """busy_s / (slots × run wall time): 1.0 means every slot was busy all run long."""
    memory_high_mb: float | None = None
    """The most memory its jobs held at once, as the sum of the peaks of the jobs running
    together (an upper bound: each job's peak counts for its whole run)."""


def memory_high_water(results: list[JobResult]) -> float | None:
    """The largest sum of peaks over jobs that ran at the same time (see ``NodeUsage``)."""
    events: list[tuple[float, int, float]] = []
    for r in results:
        if r.started_at is not None and r.ended_at is not None and r.max_rss_mb:
            events += [(r.started_at, 1, r.max_rss_mb), (r.ended_at, 0, r.max_rss_mb)]
    if not events:
        return None
    held = high = 0.0
    for _, starts, mb in sorted(events):  # at equal times an end comes first
        held += mb if starts else -mb
        high = max(high, held)
    return high


@dataclass
class RunSummary:
    """Every job's outcome and cost, totals, and per-node use of the slots."""

    results: list[JobResult] = field(default_factory=list)
    wall_s: float = 0.0
    slots_per_node: int | None = None
    """max_concurrent of the run (for the slot utilisation)."""
    output_root: str | None = None
    """The folder the run's images are under (the report is written there)."""
    report: str | None = None
    """The run's report.html, once written."""
    note: str | None = None
    """What the run looked for and why it imaged nothing, or what stopped it (a line)."""
    grouping: str = ""
    """How its MSs were grouped into jobs (``grouping.describe``), for the report's title."""
    night: str | None = None
    """The night it imaged when its patterns name it by date (``{yesterday}`` → ``20231201``):
    its report is that night's."""
    command_s: float | None = None
    """The whole command's time (Prefect's start included), when the command line ran it."""

    @property
    def n_ok(self) -> int:
        """Jobs whose images are there: made now, or by an earlier run."""
        return sum(r.ok and not r.no_data for r in self.results)

    @property
    def n_cancelled(self) -> int:
        return sum(r.status == CANCELLED for r in self.results)

    @property
    def n_failed(self) -> int:
        """Jobs that did not end ok, but for the cancelled ones (what the person asked for)."""
        return sum(not r.ok and r.status != CANCELLED for r in self.results)

    @property
    def n_skipped(self) -> int:
        """Done by an earlier run."""
        return sum(r.status == SKIPPED and not r.no_data for r in self.results)

    @property
    def n_no_data(self) -> int:
        return sum(r.no_data for r in self.results)

    @property
    def ok(self) -> bool:
        """Nothing failed or was cancelled (a job with no data yet is no failure)."""
        return all(r.ok for r in self.results)

    def counts(self) -> str:
        """``3 ok (1 skipped: done before), 1 failed, 2 cancelled``: the one wording of a run's
        outcome, on the terminal, in the artifact and in the report."""
        skipped = f" ({self.n_skipped} skipped: done before)" if self.n_skipped else ""
        cancelled = f", {self.n_cancelled} cancelled" if self.n_cancelled else ""
        no_data = f", {self.n_no_data} {NO_DATA_YET}" if self.n_no_data else ""
        return f"{self.n_ok} ok{skipped}, {self.n_failed} failed{cancelled}{no_data}"

    def nodes(self) -> list[NodeUsage]:
        usage: dict[str, list[JobResult]] = {}
        for r in self.results:
            if r.job.host is not None and r.wall_s is not None:
                usage.setdefault(r.job.host, []).append(r)
        out = []
        for host, ran in usage.items():
            slots, busy = self.slots_per_node, sum(r.wall_s or 0.0 for r in ran)
            util = busy / (slots * self.wall_s) if slots and self.wall_s > 0 else None
            out.append(NodeUsage(host, len(ran), busy, util, memory_high_water(ran)))
        return out

    def totals(self) -> tuple[float, float | None, float | None]:
        """Total wall (s), CPU (s) and the largest peak memory (MiB) over the jobs."""
        walls = [r.wall_s for r in self.results if r.wall_s is not None]
        cpus = [r.cpu_s for r in self.results if r.cpu_s is not None]
        rss = [r.max_rss_mb for r in self.results if r.max_rss_mb is not None]
        return sum(walls), (sum(cpus) if cpus else None), (max(rss) if rss else None)

    def lines(self, every_job: bool = True) -> list[str]:
        """The end-of-run table for a terminal: one line per job, totals, one line per node.

        ``every_job=False``: only the jobs that did not end well (the command line has
        already printed each job's line as it finished; a night's failures are then
        listed once more at the end, where they are looked for)."""
        if every_job:
            out = [job_line(r) for r in self.results]
        else:
            not_ok = [job_line(r) for r in self.results if not r.ok]
            out = [f"  {len(not_ok)} job(s) did not end well:", *not_ok] if not_ok else []
        wall, cpu, rss = self.totals()
        if self.results:
            extra = (f", cpu {cpu:.1f} s" if cpu is not None else "") + (f", largest peak {rss:.0f} MiB" if rss is not None else "")
            out.append(f"  total: job time {wall:.1f} s{extra}")
        for node in self.nodes():
            util = f", slots busy {node.utilisation:.0%} ({self.slots_per_node} slot(s) × {self.wall_s:.1f} s)" if node.utilisation is not None else ""
            mem = f", memory at once ≤ {size_text(node.memory_high_mb)}" if node.memory_high_mb else ""
            out.append(f"  node {node.host}: {node.jobs} job(s), busy {node.busy_s:.1f} s{util}{mem}")
        whole = ""
        if self.command_s is not None and self.command_s - self.wall_s >= 1:  # (a second of start-up is no news)
            whole = f" (the command: {self.command_s:.1f} s, Prefect's start included)"
        out.append(f"{len(self.results)} job(s): {self.counts()}, in {self.wall_s:.1f} s{whole}")
        if self.note:
            out.append(self.note)
        if self.output_root:
            out.append(f"images under: {self.output_root}")
        if self.report:
            out.append(f"report: {self.report}")
        return out

    def markdown(self) -> str:
        """The run as a Prefect markdown artifact, narrow enough for the UI's artifact page:
        the outcome, a five-column job table, then a line per job that did not succeed
        (with its reason and log), each job's image details, and the nodes."""

        def num(value, fmt, unit=""):
            return "" if value is None else format(value, fmt) + unit

        head = f"**{self.counts()}** in {self.wall_s:.1f} s"
        out = [head] + (["", self.note] if self.note else [])
        if not self.results:
            return "\n".join(out)
        out += ["", "| job | state | wall | peak mem | image peak / rms |", "|---|---|---|---|---|"]
        for r in self.results:
            st = r.stats
            image = f"{st.peak:.4g} / {st.rms:.3g} {st.unit or ''}".strip() if st else ""
            out.append(f"| {r.job.label} | {r.status.upper()} | {num(r.wall_s, '.1f', ' s')} "
                       f"| {num(r.max_rss_mb, '.0f', ' MiB')} | {image} |")
        wall, cpu, rss = self.totals()
        out.append(f"| **total** | {self.counts()} | {wall:.1f} s | {num(rss, '.0f', ' MiB')} | |")
        trouble = [r for r in self.results if not r.ok]
        if trouble:
            out += ["", "**Not done**", ""]
            out += [f"- `{r.job.label}` {r.status.upper()}: {r.reason or 'no reason given'} (log: `{r.job.log_path}`)"
                    for r in trouble]
        out += ["", "**Jobs**", ""]
        for r in self.results:
            st = r.stats
            bits = [f"exit {r.exit_code}" if r.exit_code is not None else "", f"CPU {r.cpu_s:.1f} s" if r.cpu_s is not None else "",
                    f"SLURM {r.slurm_job}" if r.slurm_job else "", f"attempt {r.attempt}" if r.attempt > 1 else "",
                    f"image `{r.image}`" if r.image else "",
                    f"dynamic range {st.dynamic_range:.0f}" if st and st.dynamic_range else "",
                    f"beam {_beam(st)}\"" if st and _beam(st) else "", f"log `{r.job.log_path}`"]
            out.append(f"- `{r.job.label}`: " + ", ".join(b for b in bits if b))
        nodes = [f"{n.host} {n.jobs} job(s), busy {n.busy_s:.1f} s"
                 + ("" if n.utilisation is None else f" ({n.utilisation:.0%} of its slots)") for n in self.nodes()]
        if nodes:
            out += ["", "**Nodes**: " + "; ".join(nodes)]
        return "\n".join(out)
