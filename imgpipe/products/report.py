"""``report.html``: one self-contained page per run, to look at a night over coffee.

Every job with its quick-look image (embedded, so the file can be mailed or copied
anywhere), state, cost, image statistics, the exact command and a link to its log.
Written to the output root (the folder common to all jobs' out-dirs) as
``report-<date>T<time>.html``, and copied to ``report.html`` (the latest run that ran a
job: a quiet night's report, or a duplicate run's that only skipped what the first one
made, does not hide the last real night's).
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
from datetime import datetime

from imgpipe.core.job_resources import size_text
from imgpipe.core.results import SKIPPED, RunSummary

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} .sub{color:#666;margin-bottom:1em}
table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ccc;padding:.2em .6em;font-size:.9em;text-align:left}
.jobs{display:flex;flex-wrap:wrap;gap:1em}
.job{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;width:520px}
.job h2{font-size:1.05em;margin:0 0 .4em} .job img{width:100%;height:auto;border:1px solid #eee}
.state{font-weight:bold;padding:0 .4em;border-radius:3px}
.ok,.skipped{background:#d6f5d6} .failed,.timed-out{background:#f8d0d0} .cancelled{background:#eee}
code{display:block;white-space:pre-wrap;word-break:break-all;font-size:.75em;background:#f3f3f3;padding:.4em;margin-top:.4em}
.noimg{height:120px;display:flex;align-items:center;justify-content:center;color:#999;border:1px dashed #ccc}
"""


def output_root(summary: RunSummary) -> str | None:
    """The run's output root (the config's, stable for any set of jobs), or else the folder
    common to every job's out-dir; None if this machine does not see it."""
    dirs = [r.job.out_dir for r in summary.results]
    if not dirs and not summary.output_root:
        return None
    root = summary.output_root or os.path.commonpath(dirs)  # (a summary made without its plan's root)
    return root if os.path.isdir(root) else None


def _png_data(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def _num(value, fmt: str, unit: str = "") -> str:
    """``value`` formatted with its unit, or "—" when it is not known (a job that never ran)."""
    return "—" if value is None else format(value, fmt) + unit


def render(summary: RunSummary, title: str, root: str) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<div class='sub'>{e(summary.counts())}, "
        f"{len(summary.results)} job(s) in {summary.wall_s:.1f} s &middot; written {e(datetime.now().isoformat(timespec='seconds'))}</div>",
        f"<p class='note'>{e(summary.note)}</p>" if summary.note else "",
        "<table><tr><th>node</th><th>jobs</th><th>busy (s)</th><th>slot utilisation</th><th>memory at once ≤</th></tr>",
    ]
    for n in summary.nodes():
        util = "" if n.utilisation is None else f"{n.utilisation:.0%}"
        mem = "" if n.memory_high_mb is None else size_text(n.memory_high_mb)
        parts.append(f"<tr><td>{e(n.host)}</td><td>{n.jobs}</td><td>{n.busy_s:.1f}</td><td>{util}</td><td>{mem}</td></tr>")
    parts.append("</table><div class='jobs'>")
    for r in summary.results:
        job, st = r.job, r.stats
        png = _png_data(r.quicklook)
        picture = f"<img alt='quick-look of {e(job.label)}' src='{png}'>" if png else "<div class='noimg'>no image</div>"
        rows = [
            ("host", job.host or ""),
            ("wall / CPU", f"{_num(r.wall_s, '.1f', ' s')} / {_num(r.cpu_s, '.1f', ' s')}"),
            ("peak memory", _num(r.max_rss_mb, '.0f', ' MiB')),
            ("exit code", _num(r.exit_code, "d")),
        ]
        if job.given is not None:
            eff = "" if r.cpu_efficiency is None else f", CPU efficiency {r.cpu_efficiency:.0%}"
            rows.append(("given", f"{job.given.describe()}{eff}" + (" (peak above it)" if r.over_memory else "")))
        if r.slurm_job:
            rows.append(("SLURM job", r.slurm_job))
        if r.reason:
            rows.append(("why", r.reason))
        if st is not None:
            rows += [
                ("image", os.path.relpath(st.image, root)),
                ("peak", f"{st.peak:.4g} {st.unit} at RA {st.peak_ra_deg:.3f}°, Dec {st.peak_dec_deg:.3f}°"),
                ("rms (MAD)", f"{st.rms:.3g} {st.unit}"),
                ("dynamic range", _num(st.dynamic_range, ".0f")),
            ]
            if st.beam_major_arcsec is not None:
                rows.append(("beam", f"{st.beam_major_arcsec:.1f}\" × {st.beam_minor_arcsec:.1f}\", PA {st.beam_pa_deg:.0f}°"))
        table = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
        log = os.path.relpath(job.log_path, root)
        parts.append(
            f"<div class='job'><h2>{e(job.label)} <span class='state {e(r.status)}'>{e(r.status)}</span></h2>"
            f"{picture}<table>{table}</table>"
            f"<a href='{e(log)}'>log</a><code>{e(job.command_line())}</code></div>"
        )
    parts.append("</div></body></html>\n")
    return "".join(parts)


def write_report(summary: RunSummary, title: str) -> str | None:
    """Write the run's report in the output root; returns its path (None if no root here).

    A run that names its night by date (``{yesterday}``) writes ``report-<night>.html``,
    the night's report, else ``report-<date>T<time>.html``. A run that ran no job (all done
    before, or nothing to image) never replaces a report that is there (the night's, or
    ``report.html``, the last run that ran a job). ``reports.html`` lists them all."""
    root = output_root(summary)
    if root is None:
        return None
    ran = not all(r.status == SKIPPED for r in summary.results)
    name = summary.night or datetime.now().strftime("%Y%m%dT%H%M%S")
    path = os.path.join(root, f"report-{name}.html")
    if not ran and summary.night and os.path.exists(path):
        return path  # (a duplicate of a night, or a re-run that found it all done)
    _replace(path, render(summary, title, root))
    if ran:
        latest_tmp = os.path.join(root, f".report.html.{os.getpid()}.tmp")
        shutil.copyfile(path, latest_tmp)
        os.replace(latest_tmp, os.path.join(root, "report.html"))
    _replace(os.path.join(root, "reports.html"), _index(root))
    return path


def _replace(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


_TITLE = re.compile(r"<title>(.*?)</title>", re.S)


def _index(root: str) -> str:
    """``reports.html``: every report of the output root, the newest night first, by title."""
    rows = []
    for name in sorted((n for n in os.listdir(root) if n.startswith("report-") and n.endswith(".html")), reverse=True):
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                head = f.read(4096)
        except OSError:
            continue
        found = _TITLE.search(head)
        title = html.unescape(found.group(1)) if found else name
        rows.append(f"<li><a href='{html.escape(name)}'>{html.escape(name[7:-5])}</a> {html.escape(title)}</li>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>imgpipe reports</title></head><body>"
            "<h1>imgpipe reports</h1><ul>" + "".join(rows) + "</ul></body></html>\n")
