"""imgpipe plans the same WSClean jobs as the original imgpipe (nenucal 0.29.2), on a corpus.

The original's own code runs (installed from PyPI into a venv of its own at test time,
see support.original_imgpipe): its settings with their defaults, its data handler, its
grouping loop and its ``build_wsclean_cmd``. Each case is a data handler and a config
written here, in both data handler formats (subband, LST and N2 levels, composite
spectral windows), configs in nenucal's style and ``default_settings`` chains. The same
jobs means the same MS lists in the same order and the same WSClean options (order
aside), apart from the differences documented in docs/from_nenucal.md, which the corpus
leaves out (``key = false``, ``channels-out``, ``$obs_id$`` over several obs_ids) or
checks on their own below.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import pytest

from imgpipe.core.request import RunRequest
from imgpipe.prepare import prepare_run

from support.markers import requires_wsclean
from support.nenucal_style import nenucal_style
from support.original_imgpipe import original, plan_with_original

pytestmark = requires_wsclean  # imgpipe checks option names against the installed WSClean


@pytest.fixture(scope="module")
def nenucal():
    found = original()
    if isinstance(found, str):
        pytest.skip(found)
    return found


OLD_DH = """
bp_cal_path = 'cal/%OBS_ID%.h5'
[data_level_path]
L1 = '{root}/net/%NODE%/L1'
L2 = '{root}/net/%NODE%/L2/%YEAR%/%MONTH%'
L2_BP = '{root}/bp/%OBS_ID%'
[spectral_windows]
SW01 = [98, 100]
SW02 = [146, 147]
SW03 = [200, 200]
SW_ALL = ['SW01', 'SW02']
[obs_ids]
'20231201_NT04' = ['node101', 'node102', 'node103']
'20231202_NT04' = ['node103', 'node104', 'node101']
'20240107_XYZ' = ['node102', 'node102', 'node102']
[remote_hosts.cep]
host = 'cep.example'
"""

NEW_DH = """
[data_levels.L1]
path = '{root}/net/%NODE%/L1'
[data_levels.L2]
path = '{root}/net/%NODE%/L2/%YEAR%/%MONTH%'
input = 'L1'
avg_freq = 4
[data_levels.L2_LST]
path = '{root}/lst/%N1_OBS_ID%'
input = 'L2'
lst = {{start = 0, end = 24, width = 1, longitude = 6.57}}
[data_levels.RAW]
path = '{root}/raw/%NODE%'
subbands = true
[spectral_windows]
SW01 = [98, 99]
SW02 = [146, 146]
SW_ALL = ['SW01', 'SW02']
[obs_ids]
'20231201_NT04' = ['node101', 'node102']
'20231202_NT04' = ['node103', 'node104']
[n2_obs_ids.20231201_N2]
nodes = 'node[101-102]'
n1_obs_ids = ['20231201_NT04', '20231202_NT04']
[worker.resources]
heavy = {{cpus = 8, mem = '30GB'}}
"""

WSCLEAN = """out-dir = '{root}/images/{out}'
size = '512 512'
scale = '1amin'
niter = 1000
auto-threshold = 3
multiscale = true
"""

CHUNKS = [  # time chunks of the N2 obs_id on its nodes, LST bins of the LST level
    "net/node101/L2/2023/12/20231201_N2/SW01_T001.MS",
    "net/node101/L2/2023/12/20231201_N2/SW01_T003.MS",
    "net/node102/L2/2023/12/20231201_N2/SW01_T002.MS",
    "net/node102/L2/2023/12/20231201_N2/SW02_T001.MS",
    "lst/20231201_NT04/SW01_LST120.MS",
    "lst/20231201_NT04/SW01_T004.MS",
    "lst/20231201_NT04/SW01_LST015.MS",
    "lst/20231202_NT04/SW01_LST015.MS",
]

CASES = [
    # (data handler, level, out-dir, arguments)
    ("old", "L2", "$obs_id$/$sw$", ["2023*"]),
    ("old", "L2", "$obs_id$/$sw$", ["2023*", "--combine"]),
    ("old", "L2", "$obs_id$/$sw$", ["2023120*:SW_ALL", "20240107_XYZ:SW03", "-c"]),
    ("old", "L1", "$obs_id$/$sw$/$ms_basename$", ["20231201_NT04:SW0[12]"]),
    ("old", "L1", "$obs_id$/$sw$", ["*:SW_ALL", "--combine"]),
    ("old", "L2_BP", "$sw$", ["2023120*,2024*", "--combine", "--combine_obs_ids"]),
    ("new", "L1", "$obs_id$/$sw$/$ms_basename$", ["*_NT04"]),
    ("new", "L1", "$obs_id$/$sw$", ["20231201_N2:SW_ALL", "-c"]),
    ("new", "L2", "$obs_id$/$sw$", ["20231201_N2", "-c"]),
    ("new", "L2", "$obs_id$/$sw$/$ms_basename$", ["20231201_N2:SW01"]),
    ("new", "L2_LST", "$obs_id$/$sw$", ["2023120?_NT04:SW01", "-c"]),
    ("new", "RAW", "$sw$", ["*:SW02", "-c", "-o"]),
]


def _world(tmp_path: Path, dh: str, level: str, out: str, base: str | None = None) -> Path:
    for chunk in CHUNKS:
        (tmp_path / chunk).mkdir(parents=True, exist_ok=True)
    (tmp_path / "dh.toml").write_text((OLD_DH if dh == "old" else NEW_DH).format(root=tmp_path))
    text = nenucal_style(WSCLEAN.format(root=tmp_path, out=out), nodes="node[101-104]", data_handler="dh.toml", level=level)
    if base is not None:
        (tmp_path / "base.toml").write_text(base)
        text = "default_settings = 'base.toml'\n" + text
    (tmp_path / "img.toml").write_text(text)
    return tmp_path / "img.toml"


def _job(argv: list[str], ms: list[str]) -> tuple:
    """(-name, MSs, options as a multiset of (key, values)): the job, option order aside."""
    assert argv[0] == "wsclean" and argv[1] == "-name", argv
    assert argv[len(argv) - len(ms):] == ms, (argv, ms)
    options, key = [], None
    for token in argv[3:len(argv) - len(ms)]:
        if token.startswith("-") and not token[1:2].isdigit():
            key = token[1:]
            options.append([key])
        else:
            options[-1].append(token)
    return argv[2], tuple(ms), frozenset(Counter(tuple(o) for o in options).items())


def original_jobs(nenucal, cfg: Path, args: list[str], tmp_path: Path) -> Counter:
    jobs = plan_with_original(cfg, args, tmp_path / "original.json")
    out = Counter()
    for job in jobs:
        argv = shlex.split(job["cmd"])
        ms = [t for t in argv if t.endswith(".MS")]
        out[_job(argv, ms)] += 1
    return out


def imgpipe_jobs(cfg: Path, args: list[str]) -> Counter:
    flags = {"--combine", "-c", "--combine_obs_ids", "-o"}
    patterns = tuple(a for a in args if a not in flags)
    request = RunRequest(str(cfg), patterns, combine=bool({"--combine", "-c"} & set(args)),
                         combine_obs_ids=bool({"--combine_obs_ids", "-o"} & set(args)), cwd=str(cfg.parent))
    plan = prepare_run(request).plan
    # (the -j and -abs-mem of each job's share of its node are imgpipe's own: see test_job_resources)
    return Counter(_job(list(job.science_argv), list(job.ms)) for job in plan.jobs)


@pytest.mark.parametrize(("dh", "level", "out", "args"), CASES, ids=[f"{c[0]}-{c[1]}-{'_'.join(c[3])}" for c in CASES])
def test_the_same_jobs_as_the_original(nenucal, tmp_path, dh, level, out, args):
    cfg = _world(tmp_path, dh, level, out)
    theirs = original_jobs(nenucal, cfg, args, tmp_path)
    assert theirs, "the corpus case gives the original no job: a case that proves nothing"
    assert imgpipe_jobs(cfg, args) == theirs


def test_a_default_settings_file_under_the_config(nenucal, tmp_path):
    base = "[worker]\nmax_concurrent = 8\n[wsclean]\nweight = 'uniform'\nniter = 5\nmgain = 0.8\npol = 'IQUV'\n"
    cfg = _world(tmp_path, "old", "L2", "$obs_id$/$sw$", base=base)
    theirs = original_jobs(nenucal, cfg, ["2023*", "-c"], tmp_path)
    assert theirs and imgpipe_jobs(cfg, ["2023*", "-c"]) == theirs
    (name, _, options), = list(theirs)[:1]
    assert ("weight", "uniform") in dict(options) and ("niter", "1000") in dict(options)  # the config over its base


def test_documented_difference_false_drops_the_flag_where_the_original_emits_it(nenucal, tmp_path):
    cfg = _world(tmp_path, "old", "L2", "$obs_id$/$sw$")
    cfg.write_text(cfg.read_text().replace("multiscale = true", "multiscale = false"))
    theirs, = list(original_jobs(nenucal, cfg, ["20231201_NT04:SW01"], tmp_path))
    ours, = list(imgpipe_jobs(cfg, ["20231201_NT04:SW01"]))
    assert ("multiscale",) in dict(theirs[2]) and ("multiscale",) not in dict(ours[2])
    assert theirs[:2] == ours[:2]


def test_documented_difference_two_jobs_on_the_same_images_are_refused_not_overwritten(nenucal, tmp_path):
    """An N2 obs_id at a subband level holds SB98.MS of each of its N1 obs_ids: with
    out-dir '$obs_id$/$sw$/$ms_basename$' two jobs write one image; the original runs both."""
    from imgpipe.core.errors import InputError

    cfg = _world(tmp_path, "new", "L1", "$obs_id$/$sw$/$ms_basename$")
    theirs = original_jobs(nenucal, cfg, ["20231201_N2:SW01"], tmp_path)
    names = [name for name, _, _ in theirs]
    assert len(names) == 4 and len(set(names)) == 2  # four jobs, two images written twice
    with pytest.raises(InputError, match="two jobs would write the same images"):
        imgpipe_jobs(cfg, ["20231201_N2:SW01"])



def test_the_original_s_own_settings_template_loads_unchanged(nenucal, tmp_path):
    """The file nenucal's users copy (read from the installed wheel, not from this repository)."""
    from imgpipe.core.config import load_config

    template = nenucal[1] / "nenucal" / "templates" / "default_img_settings.toml"
    cfg = load_config(template)
    assert cfg.name == "img" and cfg.data_handler is None and cfg.worker.slurm_nodes is None
    assert dict(cfg.options) == {"pol": "I", "weight": "briggs 0", "data-column": "CORRECTED_DATA"}
