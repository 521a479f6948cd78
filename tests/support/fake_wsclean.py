"""The fake WSClean (``fake_wsclean.sh``) and its trace: where and when each job ran.

Only for orchestration and fault tests; imaging is always proven with the real WSClean.
"""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).with_name("fake_wsclean.sh")


def install(folder: Path) -> tuple[Path, Path]:
    """Write the fake into ``folder``; returns (its path, its trace file)."""
    trace = folder / "trace"
    path = folder / "fake-wsclean"
    path.write_text(SCRIPT.read_text().replace("TRACE", str(trace)))
    path.chmod(0o755)
    return path, trace


def read_trace(trace: Path) -> list[tuple[str, int, str, float]]:
    """(node, pid, 'start'|'end', time) rows of a fake wsclean trace."""
    if not trace.exists():
        return []
    rows = []
    for line in trace.read_text().splitlines():
        node, pid, kind, t = line.split()[:4]
        rows.append((node, int(pid), kind, float(t)))
    return rows


def peak_overlap(rows, node: str | None = None) -> int:
    """Largest number of jobs running at once (on ``node``, or anywhere)."""
    events = sorted((t, 1 if kind == "start" else -1) for n, _, kind, t in rows if node is None or n == node)
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak
