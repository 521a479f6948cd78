"""After a job: measure its image, draw the quick-look, write its provenance record.

Runs on the machine running imgpipe, after the job's node slot is free again. It
needs the output directory to be visible here (local jobs, SLURM or SSH nodes with a
shared filesystem); otherwise there is nothing to measure and no record is written
(said once in the log).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Callable, Sequence

from imgpipe._version import __version__
from imgpipe.core.results import SKIPPED, JobResult
from imgpipe.products import cleanup, provenance
from imgpipe.products.image_stats import ImageStats, image_stats, main_image, quicklook_png

_VERSION = re.compile(r"WSClean version (\S+)")


def wsclean_version(line: str) -> str | None:
    """``3.1.0`` from WSClean's banner line ``WSClean version 3.1.0 (2022-04-01)``."""
    m = _VERSION.search(line)
    return m.group(1) if m else None


def never_started(result: JobResult) -> bool:
    """WSClean surely never ran (connection refused, a setup step failed, no data on the node)."""
    return result.started_at is None and result.pid is None and not result.maybe_started


def finish(result: JobResult, wsclean: str | None, flow_run_id: str | None, warn: Callable[[str], None],
           keep_partial: bool = False, removed: Sequence[str] = ()) -> JobResult:
    """Stats + PNG for a successful job, and the provenance record for any job that ran.

    A job that did not end ok (failed, cancelled, timed out, its connection lost) leaves
    partial images: removed (the record lists them, with ``removed``: WSClean's temporary
    files already gone) unless ``keep_partial`` (``[worker] keep_partial_images``). A job
    whose WSClean never started changed nothing: the record it found is put back in place
    of its "being written" one (:func:`provenance.put_back`)."""
    job = result.job
    if not os.path.isdir(job.out_dir):
        warn(f"{job.out_dir} is not visible here: no image statistics, quick-look or provenance record")
        return result
    path = provenance.record_path(job.out_dir, job.name)
    if never_started(result):
        try:
            provenance.put_back(path)
        except OSError as err:
            warn(f"cannot put back the record {path}: {err.strerror}")
        return result
    skew = provenance.clock_offset(job.out_dir)
    outputs = provenance.fits_outputs(job.image_prefix, since=result.started_at, clock_offset=skew)
    partial: list[str] = []
    if not result.ok and not keep_partial and result.started_at is not None:
        partial = [os.path.basename(p) for p in cleanup.remove([os.path.join(job.out_dir, o["path"]) for o in outputs])]
        outputs = [o for o in outputs if o["path"] not in partial]
    image = stats = png = None
    if result.ok:
        image = main_image(job.image_prefix)
        if image is None or not outputs:  # e.g. -predict: fine, but nothing to measure or resume
            warn(f"{job.label}: no image {job.image_prefix}-*image.fits written: no statistics, and the job will run again next time")
        else:
            try:
                stats = image_stats(image)
                png = quicklook_png(image, image[: -len(".fits")] + ".png", job.label)
            except Exception as err:  # a damaged image must not hide that the job ran
                warn(f"{image}: cannot measure the image: {err}")
    record = provenance.build(
        result,
        complete=result.ok and image is not None and bool(outputs),
        outputs=outputs,
        wsclean_version=wsclean,
        imgpipe_version=__version__,
        flow_run_id=flow_run_id,
        stats=stats.to_json() if stats else None,
    )
    if not result.ok:
        record["partial_images"] = "kept" if keep_partial else "removed"
        record["removed"] = sorted(partial + [os.path.relpath(p, job.out_dir) if os.path.dirname(p) == job.out_dir else p
                                              for p in removed])
    try:
        provenance.write(path, record)
    except OSError as err:
        warn(f"cannot write the provenance record in {job.out_dir}: {err.strerror}")
    return replace(result, image=image, stats=stats, quicklook=png)


def skipped(job, record: dict) -> JobResult:
    """The result shown for a job already done by an earlier run."""
    stats = ImageStats(**record["stats"]) if record.get("stats") else None
    image = stats.image if stats else None
    png = image[: -len(".fits")] + ".png" if image and os.path.isfile(image[: -len(".fits")] + ".png") else None
    when = record.get("ended_at") or "an earlier run"
    return JobResult(job, SKIPPED, f"done by an earlier run ({when}); --force redoes it", exit_code=record.get("exit_code"),
                     image=image, stats=stats, quicklook=png)
