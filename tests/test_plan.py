"""Planning against real MSs and the installed WSClean's option list."""

import json
import os

import pytest

from imgpipe.core.config import load_config
from imgpipe.core.errors import ConfigError, InputError
from imgpipe.core.plan import write_plan_json
from imgpipe.facts.ms_metadata import channel_frequencies, count_distinct_channels
from imgpipe.prepare import build_plan

from support.markers import requires_wsclean

pytestmark = requires_wsclean

BASE = """
[worker]
max_concurrent = 2
[wsclean]
name = 'img'
out-dir = '$ms_basename$/images'
size = '64 64'
scale = '1amin'
"""


def test_one_job_per_ms_with_out_dir_tokens(write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    plan = build_plan(load_config(write_config(BASE)), [str(a), "SW02.MS/"], cwd=str(tmp_path))
    assert [job.ms for job in plan.jobs] == [(str(a),), (str(b),)]
    assert [job.out_dir for job in plan.jobs] == [f"{tmp_path}/SW01.MS/images", f"{tmp_path}/SW02.MS/images"]
    assert plan.jobs[0].science_argv == (  # (then -j and -abs-mem: see test_job_resources)
        "wsclean", "-name", f"{tmp_path}/SW01.MS/images/img", "-pol", "I", "-weight", "briggs", "0",
        "-data-column", "CORRECTED_DATA", "-size", "64", "64", "-scale", "1amin", str(a),
    )
    assert all(job.host == "localhost" for job in plan.jobs)


def test_each_job_gets_a_scratch_folder_of_its_own_in_either_temp_dir(write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = BASE.replace("max_concurrent = 2", "max_concurrent = 2\ntemp_dir = '/scratch/$ms_basename$'")
    plan = build_plan(load_config(write_config(cfg)), [str(a), str(b)], cwd=str(tmp_path))
    first, second = plan.jobs
    assert first.scratch.startswith("/scratch/SW01.MS/imgpipe-img-") and second.scratch.startswith("/scratch/SW02.MS/imgpipe-img-")
    assert first.argv[1:5] == ("-name", f"{tmp_path}/SW01.MS/images/img", "-temp-dir", first.scratch)
    again = build_plan(load_config(write_config(cfg)), [str(a)], cwd=str(tmp_path))
    # stable from run to run (but for the share of the node: -j, -abs-mem), so resuming sees the same job
    assert again.jobs[0].science_argv == first.science_argv
    # [wsclean] temp-dir wins over [worker] temp_dir, and is a folder of the jobs' scratch folders too:
    # two jobs sharing it would write reorder files of the same name (an MS's base name)
    own = build_plan(load_config(write_config(cfg + "temp-dir = '/mine'\n")), [str(a)], cwd=str(tmp_path)).jobs[0]
    assert own.scratch.startswith("/mine/imgpipe-img-") and own.argv.count("-temp-dir") == 1
    assert own.argv[own.argv.index("-temp-dir") + 1] == own.scratch and "/mine" not in own.argv


def test_mss_that_share_a_base_name_are_given_to_wsclean_as_links_in_the_scratch_folder(write_config, ms_copy, tmp_path):
    nights = []
    for night in ("n1", "n2"):
        (tmp_path / night).mkdir()
        nights += [str(p) for p in ms_copy("SW01.MS")]
        os.rename(nights[-1], tmp_path / night / "SW01.MS")
        nights[-1] = str(tmp_path / night / "SW01.MS")
    a, = ms_copy("SW02.MS")
    cfg = BASE.replace("max_concurrent = 2", "max_concurrent = 2\ntemp_dir = '/scratch'")
    job, = build_plan(load_config(write_config(cfg)), [*nights, str(a)], combine=True, cwd=str(tmp_path)).jobs
    assert job.ms == (*nights, str(a))  # the record names the MSs themselves
    assert job.ms_links == ((f"{job.scratch}/1-SW01.MS", nights[0]), (f"{job.scratch}/2-SW01.MS", nights[1]))
    assert job.argv[-3:] == (f"{job.scratch}/1-SW01.MS", f"{job.scratch}/2-SW01.MS", str(a))
    assert job.to_json()["ms_links"] == {f"{job.scratch}/1-SW01.MS": nights[0], f"{job.scratch}/2-SW01.MS": nights[1]}
    # no temp dir: WSClean names its files after each MS's whole path, nothing to link
    plain, = build_plan(load_config(write_config(BASE)), [*nights, str(a)], combine=True, cwd=str(tmp_path)).jobs
    assert plain.ms_links == () and plain.argv[-3:] == (*nights, str(a)) and "ms_links" not in plain.to_json()


def test_combine_uses_the_last_ms_for_tokens(write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    plan = build_plan(load_config(write_config(BASE)), [str(a), str(b)], combine=True, cwd=str(tmp_path))
    (job,) = plan.jobs
    assert job.ms == (str(a), str(b)) and job.argv[-2:] == (str(a), str(b))
    assert job.out_dir == f"{tmp_path}/SW02.MS/images"


def test_channels_out_all_and_every(write_config, ms_copy, tmp_path):
    a, b, c = ms_copy("SW01.MS", "SW02.MS", "SW03.MS")
    assert len(channel_frequencies(str(c))) == 3
    assert count_distinct_channels([str(a), str(b)]) == 8
    assert count_distinct_channels([str(a), str(a)]) == 4
    cfg = load_config(write_config(BASE + "channels-out = 'all'\n"))
    plan = build_plan(cfg, [str(a), str(c)], cwd=str(tmp_path))
    assert [job.argv[job.argv.index("-channels-out") + 1] for job in plan.jobs] == ["4", "3"]
    combined = build_plan(cfg, [str(a), str(b), str(c)], combine=True, cwd=str(tmp_path))
    assert "11" in combined.jobs[0].argv
    cfg2 = load_config(write_config(BASE + "channels-out = 'every2'\n"))
    assert "5" in build_plan(cfg2, [str(a), str(b), str(c)], combine=True, cwd=str(tmp_path)).jobs[0].argv
    cfg3 = load_config(write_config(BASE + "channels-out = 'every4'\n"))
    with pytest.raises(InputError, match="gives 0 output channels"):
        build_plan(cfg3, [str(c)], cwd=str(tmp_path))


def test_real_telescope_ms_channel_counts(shared_ms):
    assert count_distinct_channels([str(shared_ms("lwasv_4ant_4ch.ms"))]) == 4
    # this real VLA MS has 64 channels of DATA but an empty SPECTRAL_WINDOW table
    vla = shared_ms("vla_J1008+0730_64ch.ms")
    with pytest.raises(InputError, match="Measurement Set has no spectral window"):
        count_distinct_channels([str(vla)])


def test_not_a_measurement_set(write_config, tmp_path):
    fake = tmp_path / "fake.MS"
    fake.mkdir()
    (fake / "table.dat").write_text("no")
    cfg = load_config(write_config(BASE + "channels-out = 'all'\n"))
    with pytest.raises(InputError, match=r"not a readable Measurement Set .*fake.MS"):
        build_plan(cfg, [str(fake)], cwd=str(tmp_path))
    empty = tmp_path / "empty.MS"
    empty.mkdir()
    with pytest.raises(InputError, match=r"not a Measurement Set \(no table.dat\)"):
        build_plan(cfg, [str(empty)], cwd=str(tmp_path))


def test_missing_ms(write_config, tmp_path):
    with pytest.raises(InputError, match=r"Measurement Set not found: .*/missing.MS \(no \[data_handler\] section: arguments are MS paths\)"):
        build_plan(load_config(write_config(BASE)), ["missing.MS"], cwd=str(tmp_path))


def test_unknown_option_is_caught_before_anything(write_config, ms_copy, tmp_path):
    (a,) = ms_copy("SW01.MS")
    with pytest.raises(ConfigError, match=r"did you mean -auto-threshold\?"):
        build_plan(load_config(write_config(BASE + "auto-treshold = 3\n")), [str(a)], cwd=str(tmp_path))


def test_two_jobs_writing_the_same_images_are_refused(write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = load_config(write_config(BASE.replace("$ms_basename$/images", "images")))
    with pytest.raises(InputError, match=r"two jobs would write the same images .*/images/img"):
        build_plan(cfg, [str(a), str(b)], cwd=str(tmp_path))


DH = """
[data_level_path]
L2 = '{root}/%NODE%/%OBS_ID%'
[spectral_windows]
SW01 = [1, 4]
SW02 = [5, 8]
SW_ALL = ['SW01', 'SW02']
SW_NONE = []
[obs_ids]
'20231201_A' = ['node101', 'node102']
'20231202_A' = ['node102', 'node101']
"""


@pytest.fixture
def dh_config(write_config, tmp_path, sim_dir):
    import shutil

    root = tmp_path / "net"
    for obs, nodes in (("20231201_A", ("node101", "node102")), ("20231202_A", ("node102", "node101"))):
        for sw, node in zip(("SW01", "SW02"), nodes, strict=True):
            shutil.copytree(sim_dir / f"{sw}.MS", root / node / obs / f"{sw}.MS")
    (tmp_path / "dh.toml").write_text(DH.format(root=root))

    def make(extra_worker="", out_dir="$obs_id$/$sw$", extra=""):
        text = f"[worker]\n{extra_worker}\n[data_handler]\nconfig_file = 'dh.toml'\n" + BASE.split("[wsclean]")[1].join(["[wsclean]", ""])
        text = text.replace("$ms_basename$/images", out_dir) + extra
        return load_config(write_config(text))

    return make, root


def test_data_handler_plans(dh_config, tmp_path):
    make, root = dh_config
    plan = build_plan(make(), ["2023120*"], cwd=str(tmp_path))
    assert [(j.obs_id, j.sw) for j in plan.jobs] == [("20231201_A", "SW01"), ("20231201_A", "SW02"), ("20231202_A", "SW01"), ("20231202_A", "SW02")]
    assert plan.jobs[1].ms == (f"{root}/node102/20231201_A/SW02.MS",)
    assert plan.jobs[1].out_dir == f"{tmp_path}/20231201_A/SW02"

    combined = build_plan(make(out_dir="$sw$"), ["2023120*"], combine=True, combine_obs_ids=True, cwd=str(tmp_path))
    assert [(j.obs_id, j.sw, len(j.ms)) for j in combined.jobs] == [(None, "SW01", 2), (None, "SW02", 2)]

    warned = build_plan(make(out_dir="$obs_id$_$sw$"), ["20231201_A:SW_*"], combine=True, cwd=str(tmp_path))
    assert [j.sw for j in warned.jobs] == ["SW_ALL"]
    assert warned.warnings == ("20231201_A SW_NONE: no Measurement Set, skipped (no data yet)",)


def _drop_column(ms, column="CORRECTED_DATA"):
    from casacore import tables

    with tables.table(str(ms), readonly=False, ack=False) as t:
        t.removecols([column])


def test_an_ms_without_the_data_column_is_said_at_planning(write_config, ms_copy, tmp_path):
    """Issue 45: 13. nenucal's default data-column, an MS with only DATA: one line naming the
    key, its value, the MS and the columns it has (was: each job's WSClean failing with exit
    code 255); a data handler night skips that job as no data yet and plans the others."""
    a, b = ms_copy("SW01.MS", "SW02.MS")
    _drop_column(b)
    cfg = load_config(write_config(BASE))
    with pytest.raises(InputError) as err:
        build_plan(cfg, [str(a), str(b)], cwd=str(tmp_path))
    assert str(err.value).endswith(f"[wsclean] data-column = 'CORRECTED_DATA' (nenucal's default): Measurement Set {b} "
                                   "has no CORRECTED_DATA column (its data columns: DATA); set data-column to a column the MSs have")
    assert len(build_plan(load_config(write_config(BASE + "data-column = 'DATA'\n")), [str(a), str(b)], cwd=str(tmp_path)).jobs) == 2


def test_a_night_s_ms_without_its_calibrated_column_is_no_data_yet(dh_config, tmp_path):
    make, root = dh_config
    _drop_column(root / "node102" / "20231201_A" / "SW02.MS")
    plan = build_plan(make(), ["20231201_A"], cwd=str(tmp_path))
    assert [j.sw for j in plan.jobs] == ["SW01"]
    assert plan.warnings == (f"SW02 20231201_A: Measurement Set {root}/node102/20231201_A/SW02.MS has no CORRECTED_DATA "
                             "column (its data columns: DATA), skipped (no data yet)",)


def test_run_on_file_host_and_plan_json(dh_config, tmp_path):
    make, root = dh_config
    cfg = make(extra_worker=f"nodes = 'node[201-202]'\nrun_on_file_host = true\nrun_on_file_host_pattern = '{root}/(node\\d+)/'")
    plan = build_plan(cfg, ["20231201_A", "20231202_A:SW01"], cwd=str(tmp_path))
    assert [j.host for j in plan.jobs] == ["node101", "node102", "node102"]
    # pinned to hosts that are not in [worker] nodes: said in the plan (a pattern's typo shows here)
    assert plan.warnings == ("3 job(s) pinned by run_on_file_host to node101, node102, not in [worker] nodes "
                             "(node201,node202): they run there anyway (check run_on_file_host_pattern)",)
    listed = build_plan(make(extra_worker=f"nodes = 'node[101-102]'\nrun_on_file_host = true\n"
                                          f"run_on_file_host_pattern = '{root}/(node\\d+)/'"), ["20231201_A"], cwd=str(tmp_path))
    assert listed.warnings == ()
    no_pin = build_plan(make(extra_worker="nodes = 'node[201-202]'"), ["20231201_A"], cwd=str(tmp_path))
    # without run_on_file_host the node is chosen when a slot frees: any of the pool
    assert [j.host for j in no_pin.jobs] == [None, None] and no_pin.pool == ("node201", "node202")
    assert no_pin.hosts() == ["node201", "node202"]
    assert no_pin.dry_run_lines()[0].startswith("any of node201,node202: wsclean -name")
    assert plan.hosts() == ["node101", "node102"]
    out = tmp_path / "plan.json"
    write_plan_json(plan, out)
    data = json.loads(out.read_text())
    assert list(data) == ["pool", "jobs"] and data["pool"] == ["node201", "node202"]
    assert data["jobs"][0] == {
        "host": "node101",
        "argv": list(plan.jobs[0].argv),
        "ms": [f"{root}/node101/20231201_A/SW01.MS"],
        "obs_id": "20231201_A",
        "sw": "SW01",
        "out_dir": f"{tmp_path}/20231201_A/SW01",
        "temp_dir": None,
        "resources": "a share of its node, decided when imgpipe reaches it",  # (an SSH node: not reached)
        "env": {},
    }


def test_a_night_s_missing_ms_on_an_ssh_node_is_skipped_not_the_night(dh_config, tmp_path):
    """An MS that has not arrived, for a job on an SSH node: with channels-out 'all' (counted
    here) the job is skipped as no data yet and the others are planned (was: the whole run
    refused); with a number it is planned, and its node says whether the MS is there."""
    import shutil

    make, root = dh_config
    shutil.rmtree(root / "node102" / "20231201_A" / "SW02.MS")
    pinned = f"nodes = 'node[101-102]'\nrun_on_file_host = true\nrun_on_file_host_pattern = '{root}/(node\\d+)/'"
    counted = build_plan(make(extra_worker=pinned, extra="channels-out = 'all'\n"), ["2023120*"], cwd=str(tmp_path))
    assert [(j.obs_id, j.sw) for j in counted.jobs] == [("20231201_A", "SW01"), ("20231202_A", "SW01"), ("20231202_A", "SW02")]
    assert counted.warnings == (f"SW02 20231201_A: Measurement Set {root}/node102/20231201_A/SW02.MS not found from this "
                                "machine (channels-out = 'all' counts its channels here), skipped (no data yet)",)
    numbered = build_plan(make(extra_worker=pinned, extra="channels-out = 2\n"), ["2023120*"], cwd=str(tmp_path))
    assert len(numbered.jobs) == 4 and numbered.warnings == ()


def test_a_run_is_named_after_what_it_images():
    from imgpipe.core.plan import run_name

    assert run_name("/etc/imgpipe/nightly.toml", ["20231201_*"], 48) == "nightly.toml 20231201_* · 48 jobs"
    assert run_name("img.toml", ["/data/obs1/SW01.MS", "/data/obs1/SW02.MS/"], 1) == "img.toml SW01.MS SW02.MS · 1 job"
    many = run_name("img.toml", [f"/d/SB{i:03d}.MS" for i in range(100)], 100, width=30)
    assert many.startswith("img.toml SB000.MS SB001.MS SB002.MS") and "… (+" in many and many.endswith("· 100 jobs")
    assert run_name("img.toml", []) == "img.toml"


def test_the_output_root_of_a_config_does_not_move_with_its_jobs():
    from imgpipe.core.plan import output_root

    assert output_root("/data/images/$obs_id$", "/cwd") == "/data/images"
    assert output_root("images/$obs_id$/$sw$", "/cwd") == "/cwd/images"
    assert output_root("/data/img_$sw$", "/cwd") == "/data"
    assert output_root("/data/fixed", "/cwd") == "/data/fixed"
    assert output_root("$ms_in$/images", "/cwd") is None  # each MS's own folder


def test_a_plan_says_where_its_images_are():
    from imgpipe.core.plan import Plan

    from support.jobs import make_job

    jobs = (make_job(out_dir="/data/obs1/SW01.MS/images"), make_job(out_dir="/data/obs1/SW02.MS/images"))
    assert Plan(jobs).images_root() == "/data/obs1"  # out-dir '$ms_in$/images': the folder of the MSs
    assert Plan(jobs, output_root="/data/images").images_root() == "/data/images"
    assert Plan(()).images_root() is None
