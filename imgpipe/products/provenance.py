"""``<out_dir>/<name>.imgpipe.json``: how an image was made, and whether it is complete.

Written beside the images when a job ends (any way): argv, host, times, exit code,
WSClean and imgpipe versions, input MSs, Prefect flow-run id, SLURM id, the FITS files
produced (with sizes) and the image statistics. It doubles as the *success record* for
resuming a night: ``"complete": true`` is written only after WSClean exited 0 and its
images exist, and it is written last, atomically (temp file + rename). When a job
starts, the record of an earlier run is replaced by an *in progress* one (``"status":
"running"``, with the imgpipe process's host and pid), so a job that crashes half-way
never looks done, and another run that would write the same images at the same moment
(a run on another Prefect server, which does not see this run's MS locks) finds it and
does not run over them.

A job is skipped on a re-run when its record is complete, was made with the same
argv as planned (a changed config redoes it; the ``-j`` and ``-abs-mem`` of the share
it got on its node do not count), and every FITS file it lists is still there with the
same size.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from datetime import datetime, timezone

from imgpipe.products.named_files import named

RECORD_SUFFIX = ".imgpipe.json"


def record_path(out_dir: str, name: str) -> str:
    return os.path.join(out_dir, name + RECORD_SUFFIX)


_now = time.time  # this machine's clock (a test stands in another one)


def clock_offset(folder: str) -> float:
    """How far the clock of ``folder``'s file server is ahead of this machine's (seconds).

    Why: a FITS file's mtime is set by the file server (NFS), a job's start time by this
    machine; with skewed clocks a file written during the job can look older than its
    start. Measured by writing a small temporary file there (0.0 if that fails).
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".imgpipe-clock-") as probe:
            probe.write(b"t")
            probe.flush()
            return os.fstat(probe.fileno()).st_mtime - _now()
    except OSError:
        return 0.0


def fits_outputs(image_prefix: str, since: float | None = None, clock_offset: float = 0.0) -> list[dict]:
    """The FITS files ``<prefix>-*.fits`` written at or after ``since`` (this machine's
    clock; ``clock_offset``: the file server's clock minus this one), with their sizes."""
    out = []
    for path in named(image_prefix, "-", ".fits"):
        if path.endswith("-tmp.fits"):  # WSClean's scratch images: never a product
            continue
        st = os.stat(path)
        if since is None or st.st_mtime >= since + clock_offset - 2:
            out.append({"path": os.path.basename(path), "size": st.st_size})
    return out


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def build(result, *, complete: bool, outputs: list[dict], wsclean_version: str | None, imgpipe_version: str,
          flow_run_id: str | None, stats: dict | None) -> dict:
    job = result.job
    return {
        "complete": complete,
        "status": result.status,
        "reason": result.reason,
        "argv": list(job.argv),
        "plan_argv": list(job.science_argv),
        "resources": job.given.to_json() if job.given else None,
        "memory_estimate_mib": result.memory_estimate_mib,
        "env": dict(job.env),
        "host": job.host,
        "ms": list(job.ms),
        "obs_id": job.obs_id,
        "sw": job.sw,
        "started_at": _iso(result.started_at),
        "ended_at": _iso(result.ended_at),
        "duration_s": result.wall_s,
        "exit_code": result.exit_code,
        "cpu_s": result.cpu_s,
        "max_rss_mb": result.max_rss_mb,
        "attempt": result.attempt,
        "slurm_job": result.slurm_job,
        "wsclean_version": wsclean_version,
        "imgpipe_version": imgpipe_version,
        "prefect_flow_run_id": flow_run_id,
        "outputs": outputs,
        "stats": stats,
    }


def write(path: str, record: dict) -> None:
    """Write the record atomically: a reader never sees half of it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def other_jobs_images(job, record: dict | None) -> dict | None:
    """``record`` (the one at ``job``'s ``out-dir/name``) when it is another job's (other
    MSs), complete or not.

    Why: a job whose MS list differs writes different images under the same names; run
    over them, it would replace another night's (or another combination's) images
    without a word.
    """
    if record is None or record.get("ms") == list(job.ms):
        return None
    return record


def refusal(job, record: dict) -> str:
    """One line naming both jobs, for a job that would replace another job's images."""
    theirs = " ".join(str(x) for x in (record.get("sw"), record.get("obs_id")) if x) or "another job"
    ms = record.get("ms") or []
    when = record.get("ended_at") or record.get("started_at") or "an earlier run"
    state = "complete" if record.get("complete") else "being written" if being_written(record) else "incomplete"
    return (f"refused: {job.image_prefix} holds the images of {theirs} ({len(ms)} MS, {state}, {when}), "
            f"not of this job ({len(job.ms)} MS): give this job another out-dir or name, or --replace to replace them")


RUNNING = "running"


def in_progress(job, flow_run_id: str | None) -> dict:
    """The record of a job that is starting: not complete, and whose run it is."""
    return {
        "complete": False, "status": RUNNING, "argv": list(job.argv), "host": job.host, "ms": list(job.ms),
        "obs_id": job.obs_id, "sw": job.sw, "started_at": _iso(_now()), "prefect_flow_run_id": flow_run_id,
        "imgpipe_host": socket.gethostname(), "imgpipe_pid": os.getpid(),
    }


def mark_starting(path: str, job, flow_run_id: str | None) -> None:
    """Write the record of a job that is starting, with the record it replaces inside it
    (``earlier``): put back by :func:`put_back` if WSClean never starts."""
    found = read(path)
    if found is not None and found.get("status") == RUNNING:  # a run that died: what it had found
        found = found.get("earlier")
    write(path, {**in_progress(job, flow_run_id), "earlier": found})


def put_back(path: str) -> None:
    """A job whose WSClean never started changed nothing: its "being written" record gives way
    to the one it replaced (none: no record)."""
    found = read(path)
    if found is None or found.get("status") != RUNNING:
        return
    if found.get("earlier") is None:
        os.unlink(path)
    else:
        write(path, found["earlier"])


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, TypeError, ValueError):
        return True  # (another user's process: alive)
    return True


def being_written(record: dict | None) -> bool:
    """Another imgpipe run, still alive, is writing these images now.

    Its process is checked when it runs on this machine; a run on another machine is
    taken to be alive (its record says where: remove the record if it is not).
    """
    if not record or record.get("status") != RUNNING:
        return False
    host, pid = record.get("imgpipe_host"), record.get("imgpipe_pid")
    if host == socket.gethostname():
        return pid != os.getpid() and _pid_alive(pid)
    return True


def busy_reason(job, record: dict) -> str:
    """One line for a job whose images another live run is writing."""
    return (f"not run: {job.image_prefix} is being written now by another imgpipe run (pid {record.get('imgpipe_pid')} "
            f"on {record.get('imgpipe_host')}, since {record.get('started_at')}); if that run is gone, remove "
            f"{record_path(job.out_dir, job.name)}")


REFUSED, DONE, BUSY = "refused", "done", "busy"


def not_to_run(job, force: bool = False, replace: bool = False) -> tuple[str, dict] | None:
    """Why ``job`` is not to run, with the record that says so: ``(BUSY, theirs)`` when
    another live run is writing its images now, ``(REFUSED, theirs)`` when its images are
    another job's (``replace`` allows it), ``(DONE, record)`` when an earlier run of this
    very job is complete (``force`` redoes it); None: run it. The one rule for the real
    run (at its start, and again as each job starts), and the dry run."""
    current = read(record_path(job.out_dir, job.name))
    if current is not None and being_written(current):
        return BUSY, current
    theirs = None if replace else other_jobs_images(job, current)
    if theirs is not None:
        return REFUSED, theirs
    record = None if force else done_before(job, current)
    return (DONE, record) if record is not None else None


FINISHING_WAIT_S = 120.0
"""How long a job waits for another run's record of the very same job to turn final
(that run's WSClean has ended: it finishes its statistics and quick-look, seconds)."""


def another_run_of_this_job(job, verdict: tuple[str, dict] | None) -> bool:
    """Does ``verdict`` say another live run is writing this very job (the same MSs)?"""
    return verdict is not None and verdict[0] == BUSY and verdict[1].get("ms") == list(job.ms)


def after_the_other_run(job, verdict: tuple[str, dict] | None, force: bool, replace: bool,
                        wait_s: float = FINISHING_WAIT_S, poll_s: float = 0.5) -> tuple[str, dict] | None:
    """:func:`not_to_run` again once another run's record of this very job (same MSs) is
    final: that run's WSClean has ended, or this run could not hold the job's MS locks.
    Why: the same night run twice. The waiting job gets the MSs as soon as the first
    run's WSClean ends, a second or two before that run writes its final record; it must
    then see the images done (and skip), not "being written" (and fail)."""
    deadline = time.monotonic() + wait_s
    while another_run_of_this_job(job, verdict):
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
        verdict = not_to_run(job, force, replace)
    return verdict


def not_run_reason(job, kind: str, record: dict) -> str:
    """The one line for a job :func:`not_to_run` says is BUSY or REFUSED."""
    return busy_reason(job, record) if kind == BUSY else refusal(job, record)


def done_before(job, record: dict | None) -> dict | None:
    """``record`` if it is the complete record of an earlier run of this very job, or None (→ run it)."""
    if not record or record.get("complete") is not True:
        return None
    # the argv as planned: the cores and memory it was given do not change its images
    if record.get("plan_argv", record.get("argv")) != list(job.science_argv):
        return None
    outputs = record.get("outputs") or []
    if not outputs:
        return None
    for item in outputs:
        path = os.path.join(job.out_dir, item.get("path", ""))
        try:
            if os.path.getsize(path) != item.get("size"):
                return None
        except OSError:
            return None
    return record
