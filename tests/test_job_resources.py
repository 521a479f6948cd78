"""Cores and memory per job (core.job_resources): shares, categories, WSClean's flags, SLURM's."""

from __future__ import annotations

import pytest

from imgpipe.core import job_resources as jr
from imgpipe.core import memory_estimate as me
from imgpipe.core.config import load_config
from imgpipe.core.errors import ConfigError
from imgpipe.core.plan import Job, build_plan
from imgpipe.core.resources import Category
from imgpipe.products import provenance

from support.jobs import make_job

GiB = 1024
NODE = jr.Capacity(32, 256 * GiB)


def ask(flags=("j", "abs-mem"), category=None, threads=None, slots=4):
    return jr.Ask(category, tuple(flags), threads, slots)


def test_a_fair_share_splits_cores_and_usable_memory_by_the_node_slots():
    given = jr.give(ask(slots=4), NODE, "node102")
    usable = 256 * GiB - int(256 * GiB * 0.1)
    assert (given.cores, given.mem_mb) == (8, usable // 4)
    assert given.why == "1/4 of node102 (32 core(s), 256.0 GiB)"


def test_a_small_node_keeps_at_least_1_gib_for_itself_and_a_lone_job_gets_it_all():
    assert jr.usable_mb(jr.Capacity(2, 4 * GiB)) == 3 * GiB
    assert jr.usable_mb(jr.Capacity(1, 1536)) == 768  # never below half
    given = jr.give(ask(slots=1), jr.Capacity(2, 4 * GiB), "localhost")
    assert (given.cores, given.mem_mb, given.why.split(" of ")[0]) == (2, 3 * GiB, "all")


def test_more_slots_than_cores_still_gives_each_job_one_core():
    assert jr.give(ask(slots=8), jr.Capacity(2, 16 * GiB), "n").cores == 1


def test_unknown_capacity_gives_nothing_and_a_category_needs_none():
    assert jr.give(ask(), None, "n") is None
    assert jr.give(ask(), jr.Capacity(4, 0), "n") is None
    heavy = Category("heavy", 12, 40 * GiB)
    assert jr.give(ask(category=heavy), None, "n") == jr.Given(12, 40 * GiB, "category heavy")


def test_flags_go_before_the_ms_paths_and_the_thread_variables_into_the_environment():
    job = make_job(argv=("wsclean", "-name", "/o/img", "-size", "64", "64", "/d/a.ms", "/d/b.ms"), ms=("/d/a.ms", "/d/b.ms"))
    placed = jr.apply(job, jr.Given(8, 61 * GiB + 500, "x"), ask())
    assert placed.argv == ("wsclean", "-name", "/o/img", "-size", "64", "64", "-j", "8", "-abs-mem", "61.4",
                           "/d/a.ms", "/d/b.ms")
    assert dict(placed.env) == {"OMP_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}
    assert placed.science_argv == job.argv and placed.given.cores == 8


@pytest.mark.parametrize("options, flags, threads", [
    ({}, ("j", "abs-mem"), None),
    ({"j": 6}, ("abs-mem",), 6),
    ({"mem": 50}, ("j",), None),
    ({"abs-mem": 12, "j": "3"}, (), 3),
    ({"j": False}, ("j", "abs-mem"), None),  # `key = false` drops a key
])
def test_what_the_config_sets_itself_is_left_to_it(options, flags, threads):
    a = jr.ask_for(options, None)
    assert (a.flags, a.threads) == (flags, threads)
    job = jr.apply(make_job(argv=("wsclean", "/d/a.ms"), ms=("/d/a.ms",)), jr.Given(4, 8 * GiB, "x"), a)
    assert ("-j" in job.argv, "-abs-mem" in job.argv) == ("j" in flags, "abs-mem" in flags)
    assert dict(job.env)["OMP_NUM_THREADS"] == str(threads or 4)


def test_the_switch_turns_everything_off():
    assert jr.ask_for({}, None, enabled=False) is None
    job = make_job()
    assert jr.place(job, NODE) is job


def test_abs_mem_is_in_gb_rounded_down_to_a_tenth():
    assert [jr.abs_mem_gb(mb) for mb in (40 * GiB, 10847, 1023, 10)] == ["40", "10.5", "0.9", "0.1"]


def test_slurm_steps_get_cpus_and_memory_unless_slurm_options_set_them():
    given = jr.Given(12, 40 * GiB, "category heavy")
    assert jr.slurm_items(given, ()) == ["--cpus-per-task=12", f"--mem={40 * GiB}M"]
    assert jr.slurm_items(given, ("-p", "cpu", "-c16")) == [f"--mem={40 * GiB}M"]
    assert jr.slurm_items(given, ("--mem-per-cpu=4G", "--cpus-per-task", "8")) == []
    assert jr.slurm_items(None, ()) == []
    assert jr.slurm_capacity(("-p", "cpu", "-c", "16", "--mem=64G")) == jr.Capacity(16, 64 * GiB, "slurm_options")
    assert jr.slurm_capacity(("--cpus-per-task=4", "--mem", "8000")) == jr.Capacity(4, 8000, "slurm_options")
    assert jr.slurm_capacity(("-c", "16")) is None  # SLURM's default memory: not known here


# --- from the config file, through the plan ------------------------------------------

def plan_for(tmp_path, worker: str, wsclean: str = "", n_ms: int = 2, mpi: bool = False):
    mss = []
    for i in range(n_ms):
        (tmp_path / f"m{i}.ms").mkdir()
        mss.append(str(tmp_path / f"m{i}.ms"))
    cfg = tmp_path / "img.toml"
    cfg.write_text(f"[worker]\n{worker}\n[wsclean]\nsize = '64 64'\nout-dir = '{tmp_path}/img/$ms_basename$'\n{wsclean}")
    config = load_config(cfg)
    if mpi:
        from dataclasses import replace
        config = replace(config, nodes_mpi=("n1", "n2"))
    known = frozenset(k for k, _ in config.options)
    return build_plan(config, mss, known_options=lambda prefix: known, count_channels=lambda paths: 1, find_chunks=None)


def test_without_a_category_the_plan_leaves_the_share_to_the_node(tmp_path):
    plan = plan_for(tmp_path, "nodes = 'node1,node2'\nmax_concurrent = 3", n_ms=5)
    job = plan.jobs[0]
    # (64², one channel, no niter so no cleaning: the dirty image's planes of 16 KiB for its memory estimate)
    planes = me.NO_CLEAN_PLANES
    assert job.given is None and job.ask == jr.Ask(None, ("j", "abs-mem"), None, 3, 64 * 64 * 4 / 2**20 * planes)
    assert "-j" not in job.argv and job.to_json()["resources"] == "a share of its node, decided when imgpipe reaches it"
    placed = jr.place(job, NODE)
    assert placed.given.cores == 32 // 3 and placed.to_json()["resources"]["mem_mb"] == placed.given.mem_mb
    assert placed.to_json()["env"]["MKL_NUM_THREADS"] == str(32 // 3)


def test_a_run_of_fewer_jobs_than_slots_splits_the_node_among_them(tmp_path):
    assert plan_for(tmp_path, "max_concurrent = 4", n_ms=1).jobs[0].ask.slots == 1


def test_a_job_left_alone_on_a_re_run_gets_its_whole_node(tmp_path):
    """Five jobs on two slots share their node by two; on a re-run where four are done the
    one left shares it with no one (issue 45: 11)."""
    plan = plan_for(tmp_path, "max_concurrent = 2", n_ms=5)
    assert [job.ask.slots for job in plan.jobs] == [2] * 5
    left = plan.shares_left({0, 1, 2, 3}, 2)
    assert left.jobs[4].ask.slots == 1 and left.jobs[:4] == plan.jobs[:4]
    assert "all of localhost" in jr.place(left.jobs[4], jr.Capacity(2, 4 * GiB)).given.why


def test_jobs_pinned_to_nodes_share_each_node_only_with_the_jobs_that_may_run_there(tmp_path):
    from dataclasses import replace
    plan = plan_for(tmp_path, "nodes = 'a,b'\nmax_concurrent = 3", n_ms=4)
    pinned = replace(plan, jobs=tuple(replace(job, host=h) for job, h in zip(plan.jobs, "aabb", strict=True)), pool=("a", "b"))
    assert [job.ask.slots for job in pinned.shares_left((), 3).jobs] == [2, 2, 2, 2]
    assert [job.ask.slots for job in pinned.shares_left({0}, 3).jobs[1:]] == [1, 2, 2]


def test_a_resources_table_makes_every_wsclean_job_heavy_as_in_the_original(tmp_path):
    plan = plan_for(tmp_path, "nodes = 'node1'\n[worker.resources]\nheavy = {cpus = 6, mem = '20GB'}")
    for job in plan.jobs:
        assert job.given == jr.Given(6, 20 * GiB, "category heavy")
        assert job.argv[-3:-1] == ("-abs-mem", "20") and job.argv[-5:-3] == ("-j", "6")


def test_an_empty_resources_table_as_in_nenucal_s_template_is_no_category(tmp_path):
    """nenucal's template has ``[worker.resources]`` with nothing in it: heavy's 12 cores and
    40 GB on every laptop would be wrong; such a config gets fair shares."""
    job = plan_for(tmp_path, "[worker.resources]").jobs[0]
    assert job.ask.category is None and job.given is None


def test_a_named_category_is_used_with_the_default_table(tmp_path):
    job = plan_for(tmp_path, "category = 'medium'").jobs[0]
    assert job.given == jr.Given(4, 8 * GiB, "category medium")


def test_an_unknown_category_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        plan_for(tmp_path, "category = 'huge'\n[worker.resources]\nbig = {cpus = 64, mem = '500GB'}")
    msg = str(err.value)
    assert "img.toml: [worker] category = 'huge': no such category in [worker.resources]" in msg
    assert "known: small, medium, high_mem, cpu, heavy, big" in msg


def test_auto_resources_false_gives_no_flags(tmp_path):
    jobs = plan_for(tmp_path, "auto_resources = false\ncategory = 'small'").jobs
    assert all(j.ask is None and j.given is None and "-j" not in j.argv and not j.env for j in jobs)


def test_mpi_jobs_get_no_flags(tmp_path):
    jobs = plan_for(tmp_path, "category = 'small'", mpi=True).jobs
    assert jobs and all(j.ask is None and "-j" not in j.argv and "mpirun" in j.argv[0] for j in jobs)


def test_a_job_done_with_another_share_is_still_done(tmp_path):
    """Cores and memory do not change the images: a re-run on a node of another size
    (another -j, -abs-mem) skips the job its record says is done."""
    (tmp_path / "img-image.fits").write_bytes(b"x" * 10)
    job = make_job(argv=("wsclean", "-name", f"{tmp_path}/img", "/d/a.ms"), ms=("/d/a.ms",), out_dir=tmp_path)
    job = Job(**{**job.__dict__, "ask": jr.Ask(None, ("j", "abs-mem"), None, 2)})
    ran = jr.place(job, jr.Capacity(8, 32 * GiB))
    record = {"complete": True, "argv": list(ran.argv), "plan_argv": list(ran.science_argv),
              "outputs": [{"path": "img-image.fits", "size": 10}]}
    assert provenance.done_before(job, record) is record
    assert provenance.done_before(jr.place(job, jr.Capacity(64, 512 * GiB)), record) is record
    other = Job(**{**job.__dict__, "argv": ("wsclean", "-name", f"{tmp_path}/img", "-niter", "5", "/d/a.ms")})
    assert provenance.done_before(other, record) is None


# --- admission: what a job needs, a job that fits nowhere, the memory estimate -------------

def test_a_job_needs_its_category_or_its_share_s_cores_and_its_memory_estimate():
    heavy = Category("heavy", 12, 40 * GiB)
    job = make_job(ms=("/d/a.ms",))
    with_cat = Job(**{**job.__dict__, "ask": ask(category=heavy)})
    assert jr.demand(with_cat, NODE, 0) == (12, 40 * GiB)
    share = Job(**{**job.__dict__, "ask": jr.Ask(None, ("j",), None, 4, 100.0)})
    cores, mem = jr.demand(share, NODE, 50 * 2**20)
    # (no cores: a share's are the node's split by max_concurrent, which caps how many run)
    assert cores == 0 and mem == int(me.FIXED_MIB + 100.0 + me.VISIBILITY_FRACTION * 50)
    no_estimate = Job(**{**job.__dict__, "ask": ask(slots=4)})
    assert jr.demand(no_estimate, NODE, 0) == (0, jr.usable_mb(NODE) // 4)  # then its share's memory
    assert jr.demand(job, NODE, 0) is None  # it asks for nothing


def test_a_category_bigger_than_every_node_it_may_run_on_is_one_line():
    big = Category("big", 4, 64 * GiB)
    job = Job(**{**make_job(host=None, ms=("/d/SW01.MS",)).__dict__, "ask": ask(category=big)})
    sizes = {"n1": jr.Capacity(8, 32 * GiB), "n2": jr.Capacity(64, 48 * GiB)}
    why = jr.fits_nowhere([job], ["n1", "n2"], sizes.get)
    assert why == ("SW01.MS @ any node: category big asks for 4 core(s) and 64.0 GiB, more than any node it may run on "
                   "has (n1 8 core(s), 28.8 GiB usable, n2 64 core(s), 43.2 GiB usable): lower the category in "
                   "[worker.resources] or add a bigger node")
    sizes["n2"] = jr.Capacity(64, 128 * GiB)
    assert jr.fits_nowhere([job], ["n1", "n2"], sizes.get) is None
    assert jr.fits_nowhere([job], ["n1", "unknown"], sizes.get) is None  # a node of unknown size may take it


def test_the_memory_estimate_reads_size_channels_and_polarisations():
    assert me.image_size("1024 512") == (1024, 512) and me.image_size(2048) == (2048, 2048)
    assert me.image_size([64, 32]) == (64, 32) and me.image_size(None) is None and me.image_size("big") is None
    assert [me.polarisations(p) for p in ("I", "IQUV", "xx,yy", "iv", None, "RR")] == [1, 4, 2, 2, 1, 1]
    one = me.image_mib({"size": "1024 1024", "niter": 1000}, 1)
    assert one == 4 * (me.GRIDDING_PLANES + me.PLANES_PER_IMAGE)
    iquv = me.image_mib({"size": "1024 1024", "pol": "IQUV", "niter": "1e4"}, 16)
    assert iquv == 4 * (me.GRIDDING_PLANES + me.PLANES_PER_IMAGE * 64)
    assert me.estimate_mib(one, 2**30) == me.FIXED_MIB + one + me.VISIBILITY_FRACTION * 1024
    assert me.image_mib({}, 1) is None and me.estimate_mib(None, 10) is None


def test_the_memory_estimate_reads_the_deconvolution_settings():
    clean = {"size": "2048 2048", "niter": 10000}
    base = me.image_mib(clean, 4)
    # no cleaning (niter absent: WSClean's default 0): a few planes, whatever the channels
    dirty = me.image_mib({"size": "2048 2048"}, 4)
    assert dirty == me.image_mib({**clean, "niter": 0}, 16) == 16 * me.NO_CLEAN_PLANES < base
    # multi-scale: more planes, and more per image
    multiscale = me.image_mib({**clean, "multiscale": True}, 4)
    assert multiscale == base + 16 * (me.MULTISCALE_PLANES + 4 * me.MULTISCALE_PLANES_PER_IMAGE)
    assert me.image_mib({**clean, "multiscale": ""}, 4) == multiscale  # a flag written as ''
    assert me.image_mib({**clean, "multiscale": False}, 4) == base
    # parallel gridding: buffers per gridder past the first, with or without cleaning
    assert me.image_mib({**clean, "parallel-gridding": 3}, 4) == base + 2 * me.EXTRA_GRIDDER_MIB
    assert me.image_mib({"size": 2048, "parallel-gridding": "2"}, 4) == dirty + me.EXTRA_GRIDDER_MIB
    assert me.image_mib({**clean, "parallel-gridding": 1}, 4) == base
    # parallel deconvolution: full planes, and planes of its subimages (512²: 1 MiB) per image
    pd = me.PARALLEL_DECONVOLUTION_PLANES * 16
    assert me.image_mib({**clean, "parallel-deconvolution": 512}, 4) == base + pd + 4 * me.PARALLEL_DECONVOLUTION_SUBPLANES_PER_IMAGE
    assert me.image_mib({**clean, "parallel-deconvolution": 4096}, 1) == me.image_mib(clean, 1) + pd + 16 * me.PARALLEL_DECONVOLUTION_SUBPLANES_PER_IMAGE
    assert me.image_mib({**clean, "parallel-deconvolution": 0}, 4) == base
    # unreadable numbers are WSClean's to refuse: the estimate takes the default
    assert me.image_mib({**clean, "parallel-gridding": "many"}, 4) == base
    assert me.image_mib({"size": 2048, "niter": "lots"}, 4) == dirty
