"""The cores and memory each WSClean job is given, and how WSClean is told.

Left alone, WSClean uses every core (``-j``) and believes the whole machine's memory is
its own (``-mem 100``), whatever ``max_concurrent`` says: four jobs on a 32-core node
run 128 threads and each may fill the RAM. So each job is given a share:

- a **category** of ``[worker.resources]`` (the original worker pool's format) when the
  config names one (``[worker] category``) or has that table (then ``heavy``, as the
  original's WSClean jobs);
- else a **fair share** of its node: ``cores // max_concurrent`` and the node's usable
  memory (:func:`usable_mb`) ``/ max_concurrent``.

WSClean then gets ``-j`` and ``-abs-mem`` (unless ``[wsclean]`` sets ``j``, ``mem`` or
``abs-mem``), the job's environment the thread variables of OpenMP, OpenBLAS and MKL,
and SLURM ``--cpus-per-task`` and ``--mem``. Pure: the node's capacity is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from imgpipe.core.memory_estimate import estimate_mib
from imgpipe.core.nodes import DASK, SLURM
from imgpipe.core.resources import Category, size_mb

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Set to the job's cores, as the original worker pool does: WSClean's FFTW/OpenBLAS
threads would otherwise also default to every core."""

OS_RESERVE_FRACTION = 0.1
OS_RESERVE_MIN_MB = 1024
"""Memory a node keeps for its system, imgpipe or the node agent, and page cache: 10 %, at least 1 GiB."""


@dataclass(frozen=True)
class Capacity:
    """A node's cores and memory as its jobs can use them."""

    cores: int
    mem_mb: int
    """Its RAM, or its cgroup's memory limit when smaller; 0: unknown."""
    limited_by: str = "machine"
    """``machine``, or which cgroup limit applies (``cgroup memory``, ``cgroup cpu``)."""

    def describe(self) -> str:
        mem = size_text(self.mem_mb) if self.mem_mb else "memory unknown"
        why = [w.strip() + (" limit" if w.strip().startswith("cgroup") else "") for w in self.limited_by.split(",")
               if w.strip() != "machine"]
        return f"{self.cores} core(s), {mem}" + (f" ({', '.join(why)})" if why else "")

    def to_json(self) -> dict:
        return {"cores": self.cores, "memory_mib": self.mem_mb, "limited_by": self.limited_by}


@dataclass(frozen=True)
class Ask:
    """What the plan decided for a job's resources, before its node is known."""

    category: Category | None
    """Its category; None: a fair share of the node it runs on."""
    flags: tuple[str, ...]
    """The WSClean options imgpipe adds (``j``, ``abs-mem``): those the config does not set."""
    threads: int | None = None
    """The config's own ``j``, which the thread variables then follow."""
    slots: int = 1
    """How many jobs share a node: ``max_concurrent``, or the number of jobs left to run
    there when fewer (a run of one MS gets the whole node; see ``Plan.shares_left``)."""
    image_mib: float | None = None
    """The image part of its memory estimate (``core.memory_estimate``); None: unknown."""


@dataclass(frozen=True)
class Given:
    """The cores and memory a job was given on its node, and why."""

    cores: int
    mem_mb: int
    why: str
    """``category heavy`` or ``1/4 of node102 (32 core(s), 251.9 GiB)``."""

    def describe(self) -> str:
        return f"{self.cores} core(s) and {size_text(self.mem_mb)}: {self.why}"

    def to_json(self) -> dict:
        return {"cores": self.cores, "mem_mb": self.mem_mb, "why": self.why}


def size_text(mb: float) -> str:
    """``11.8 GiB`` or ``512 MiB``."""
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def usable_mb(capacity: Capacity) -> int:
    """The memory a node's jobs may share: its memory less :data:`OS_RESERVE_FRACTION`
    (at least :data:`OS_RESERVE_MIN_MB`), and never below half of it."""
    reserve = max(OS_RESERVE_MIN_MB, int(capacity.mem_mb * OS_RESERVE_FRACTION))
    return max(capacity.mem_mb // 2, capacity.mem_mb - reserve)


def ask_for(options: dict | tuple, category: Category | None, enabled: bool = True) -> Ask | None:
    """The plan's part: None when imgpipe sets nothing (``auto_resources = false``)."""
    if not enabled:
        return None
    values = {k: v for k, v in (options.items() if isinstance(options, dict) else options) if v is not False}
    flags = tuple(f for f, given_by in (("j", {"j"}), ("abs-mem", {"mem", "abs-mem"})) if not values.keys() & given_by)
    j = values.get("j")
    threads = int(j) if isinstance(j, int) and not isinstance(j, bool) or (isinstance(j, str) and j.isdigit()) else None
    return Ask(category, flags, threads)


def give(ask: Ask | None, capacity: Capacity | None, host: str, slots: int | None = None) -> Given | None:
    """The job's share on ``host`` (``slots``: instead of the plan's); None when neither a
    category nor the node's capacity is known."""
    if ask is None:
        return None
    if ask.category is not None:
        return Given(ask.category.cpus, ask.category.mem_mb, f"category {ask.category.name}")
    if capacity is None or capacity.mem_mb <= 0:
        return None
    n = max(1, slots or ask.slots)
    share = "all" if n == 1 else f"1/{n}"
    return Given(max(1, capacity.cores // n), max(1, usable_mb(capacity) // n),
                 f"{share} of {host} ({capacity.describe()})")


def abs_mem_gb(mem_mb: int) -> str:
    """``-abs-mem``'s value (GB, as WSClean reads it), rounded down to 0.1 GB, at least 0.1."""
    return f"{max(0.1, math.floor(mem_mb / 1024 * 10) / 10):g}"


def apply(job, given: Given | None, ask: Ask | None):
    """``job`` with ``given``: its argv gains the flags before its MS paths, its environment
    the thread variables. Unchanged when nothing is given."""
    if given is None or ask is None:
        return job
    items: list[str] = []
    if "j" in ask.flags:
        items += ["-j", str(given.cores)]
    if "abs-mem" in ask.flags:
        items += ["-abs-mem", abs_mem_gb(given.mem_mb)]
    at = len(job.argv) - len(job.ms)
    argv = (*job.argv[:at], *items, *job.argv[at:])
    env = tuple((name, str(ask.threads or given.cores)) for name in THREAD_VARIABLES)
    return replace(job, argv=argv, given=given, env=env, plan_argv=job.science_argv)


def _slurm_value(options: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` in ``slurm_options`` (``-c 16``, ``-c16``, ``--mem=64G``, ``--mem 64G``)."""
    for i, word in enumerate(options):
        for name in names:
            if word == name:
                return options[i + 1] if i + 1 < len(options) else None
            if name.startswith("--") and word.startswith(name + "="):
                return word[len(name) + 1:]
            if not name.startswith("--") and word.startswith(name) and len(word) > len(name):
                return word[len(name):]
    return None


CPUS_OPTIONS = ("-c", "--cpus-per-task")
MEM_OPTIONS = ("--mem", "--mem-per-cpu")


def slurm_capacity(options: tuple[str, ...]) -> Capacity | None:
    """What each ``srun`` step gets by ``slurm_options`` (``-c``, ``--mem``): the job's whole
    share; None unless both are given (SLURM's defaults are the cluster's, unknown here)."""
    cpus, mem = _slurm_value(options, CPUS_OPTIONS), _slurm_value(options, ("--mem",))
    if cpus is None or mem is None or not cpus.isdigit():
        return None
    try:
        mem_mb = size_mb(mem)
    except ValueError:
        return None
    return Capacity(int(cpus), mem_mb, "slurm_options")


def slurm_items(given: Given | None, options: tuple[str, ...]) -> list[str]:
    """``--cpus-per-task`` and ``--mem`` for ``srun``, each unless ``slurm_options`` has it."""
    if given is None:
        return []
    items = []
    if _slurm_value(options, CPUS_OPTIONS) is None:
        items.append(f"--cpus-per-task={given.cores}")
    if _slurm_value(options, MEM_OPTIONS) is None:
        items.append(f"--mem={given.mem_mb}M")
    return items


def demand(job, capacity: Capacity, ms_bytes: int) -> tuple[int, int] | None:
    """The (cores, MiB) ``job`` needs on a node of ``capacity``, for admission: its
    category's; else no cores (a share's cores are the node's split by ``max_concurrent``,
    which already caps how many run: ``max_concurrent = 4`` on 2 cores runs 4, each told
    ``-j 1``) and its memory estimate (or, without one, its share's memory). None: it asks
    for nothing (``auto_resources = false``, an MPI job)."""
    ask = job.ask
    if ask is None:
        return None
    if ask.category is not None:
        return ask.category.cpus, ask.category.mem_mb
    estimate = estimate_mib(ask.image_mib, ms_bytes)
    return 0, int(estimate) if estimate is not None else max(1, usable_mb(capacity) // max(1, ask.slots))


def fits_nowhere(jobs, pool, capacity) -> str | None:
    """The line for the first job whose category asks for more cores or memory than any node
    it may run on has (among the nodes whose size is known), or None. A memory estimate is
    not held against a job (it is an estimate): such a job runs alone on a node."""
    for job in jobs:
        if job.ask is None or job.ask.category is None:
            continue
        hosts = [job.host] if job.host is not None else list(pool)
        sizes = {h: c for h in hosts if (c := capacity(h)) is not None and c.mem_mb > 0}
        if len(sizes) < len(hosts):
            continue  # a node of unknown size may take it
        cat = job.ask.category
        if any(cat.cpus <= c.cores and cat.mem_mb <= usable_mb(c) for c in sizes.values()):
            continue
        nodes = ", ".join(f"{h} {c.cores} core(s), {size_text(usable_mb(c))} usable" for h, c in sizes.items())
        return (f"{job.label}: category {cat.name} asks for {cat.cpus} core(s) and {size_text(cat.mem_mb)}, more than "
                f"any node it may run on has ({nodes}): lower the category in [worker.resources] or add a bigger node")
    return None


def alone(job):
    """``job`` to run with no other on its node: a share of a whole node (a category stays
    as it is: its memory is what it asked for)."""
    if job.ask is None or job.ask.category is not None:
        return job
    return _unplaced(job, 1)


def shared_by(job, slots: int):
    """``job`` sharing its node among ``slots`` jobs; a share it was given for another
    number is decided again on its node (a category stays as it is)."""
    if job.ask is None or job.ask.category is not None or job.ask.slots == slots:
        return job
    return _unplaced(job, slots)


def _unplaced(job, slots: int):
    """``job`` with no share yet (its node gives it one when it starts), for ``slots`` jobs."""
    return replace(job, argv=job.science_argv, plan_argv=None, given=None, env=(), ask=replace(job.ask, slots=slots))


def size_unknown(host: str, worker, dask: bool = False) -> str:
    """Why ``host``'s size is not known yet, or not at all (the run log, the plan JSON)."""
    if host == DASK:
        return "the machine of whichever Dask worker takes a job, read there when the job starts"
    if dask:
        return "read on its Dask worker when the run finds it"
    if host == SLURM:
        if worker.slurm_nodes:
            return "a node of the run's SLURM allocation, once it is granted"
        return "what SLURM gives each step: slurm_options asks no cores and memory (-c, --mem), so no share is given"
    return "known when imgpipe reaches the node (a plan or a dry run does not connect)"


def place(job, capacity: Capacity | None, slots: int | None = None):
    """``job`` on its node: given a share of ``capacity`` if the plan could not decide (no
    category); unchanged if it already was given, or wants nothing, or the node is unknown.
    ``slots``: how many share the node, instead of the plan's (1 for a SLURM step)."""
    if job.ask is None or job.given is not None:
        return job
    return apply(job, give(job.ask, capacity, job.host or "its node", slots), job.ask)
