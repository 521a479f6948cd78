"""Cores and memory given to a real WSClean job here: read back from its argv, its
environment and its own log, and the image still right."""

from __future__ import annotations

import os
import shlex

from imgpipe.backends.local import LocalBackend
from imgpipe.core.config import load_config
from imgpipe.core.job_resources import THREAD_VARIABLES, abs_mem_gb, usable_mb
from imgpipe.facts.node_capacity import local_capacity
from imgpipe.prepare import build_plan
from imgpipe.products.fits_peak import pixel_distance

from support.markers import requires_wsclean
from support.sky import SMALL_IMAGE, SOURCE_DEC, SOURCE_RA

pytestmark = requires_wsclean


def config_with_env_dump(tmp_path, worker: str, wsclean: str = ""):
    """WSClean behind a script that first writes the job's environment to ``<tmp>/env-<last MS>.txt``."""
    script = tmp_path / "wsclean-env.sh"
    script.write_text(f'env > {shlex.quote(str(tmp_path))}/env-"$(basename "${{@: -1}}")".txt\nexec wsclean "$@"\n')
    text = SMALL_IMAGE.replace("j = 1\n", "") + wsclean
    cfg = tmp_path / "img.toml"
    cfg.write_text(f"[worker]\nwsclean = 'bash {script}'\n{worker}\n{text}")
    return load_config(cfg)


def env_of(tmp_path, ms) -> dict:
    lines = (tmp_path / f"env-{ms.name}.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_a_fair_share_reaches_wsclean_its_threads_and_its_log(ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    config = config_with_env_dump(tmp_path, "max_concurrent = 2")
    plan = build_plan(config, [str(a), str(b)], cwd=str(tmp_path))
    cap = local_capacity()
    cores, mem = max(1, cap.cores // 2), usable_mb(cap) // 2
    backend = LocalBackend(config.worker)
    for job, ms in zip(plan.jobs, (a, b), strict=True):
        result = backend.run(job)
        assert result.ok, result.reason
        argv = list(result.job.argv)
        assert argv[argv.index("-j") + 1] == str(cores)
        assert argv[argv.index("-abs-mem") + 1] == abs_mem_gb(mem) and argv[-1] == str(ms)
        env = env_of(tmp_path, ms)
        assert {name: env[name] for name in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, str(cores))
        log = (tmp_path / "images" / ms.name / "img.log").read_text()
        assert f"limit={abs_mem_gb(mem)}GB" in log  # WSClean's own line: "usage limited to ..."
        assert pixel_distance(str(tmp_path / "images" / ms.name / "img-image.fits"), SOURCE_RA, SOURCE_DEC) <= 1.0


def test_the_config_s_own_j_and_mem_win_and_the_switch_turns_it_all_off(ms_copy, tmp_path):
    (a,) = ms_copy("SW01.MS")
    config = config_with_env_dump(tmp_path, "", "j = 2\nmem = 50\n")
    job = build_plan(config, [str(a)], cwd=str(tmp_path)).jobs[0]
    result = LocalBackend(config.worker).run(job)
    assert result.ok, result.reason
    assert result.job.argv.count("-j") == 1 and "-abs-mem" not in result.job.argv
    assert env_of(tmp_path, a)["OMP_NUM_THREADS"] == "2"  # the thread variables follow the config's j
    assert "frac=50%" in (tmp_path / "images" / "SW01.MS" / "img.log").read_text()

    config = config_with_env_dump(tmp_path, "auto_resources = false")
    job = build_plan(config, [str(a)], cwd=str(tmp_path)).jobs[0]
    result = LocalBackend(config.worker).run(job)
    assert result.ok and "-j" not in result.job.argv and "-abs-mem" not in result.job.argv
    assert env_of(tmp_path, a).get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")  # as imgpipe's own
