"""``--nodes_mpi``: each job as one distributed WSClean started by mpirun on the first node.

Debian's package has no wsclean-mp, so one real-mpirun test puts a small MPI probe in its
place (every rank writes what Open MPI told it and the argv it got), and another images
with a real wsclean-mp where `make wsclean-mp` built one (skipped otherwise).
"""

import json
import os
import shlex
import shutil
import subprocess

import pytest

from imgpipe.core.config import MPIConfig
from imgpipe.core.errors import ConfigError
from imgpipe.core.mpi import mpirun_prefix, parse_nodes_mpi

from support.markers import requires_wsclean
from support.mpi_loopback import WSCLEAN_MP, loopback_mca

CONFIG = """
[wsclean]
name = 'img'
out-dir = 'images/$ms_basename$'
size = '128 128'
scale = '1amin'
"""

requires_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed (make test installs openmpi-bin)")
AS_ROOT = "--allow-run-as-root " if os.geteuid() == 0 else ""

PROBE = """#!/usr/bin/env python3
# stands in for wsclean-mp: one line per MPI rank
import json, os, sys
rank = os.environ["OMPI_COMM_WORLD_RANK"]
out = sys.argv[sys.argv.index("-name") + 1] + f".rank{rank}.json"
json.dump({"rank": int(rank), "size": int(os.environ["OMPI_COMM_WORLD_SIZE"]), "argv": sys.argv[1:],
           "marker": os.environ.get("IMGPIPE_MPI_MARKER")}, open(out, "w"))
print(f"probe rank {rank} of {os.environ['OMPI_COMM_WORLD_SIZE']}")
"""


def test_mpirun_argv_exactly():
    assert mpirun_prefix(MPIConfig(), ("node1", "node2")) == [
        "mpirun", "-host", "node1,node2", "-np", "2", "-x", "PATH", "-x", "LD_LIBRARY_PATH", "wsclean-mp",
    ]
    custom = MPIConfig(mpirun=("/opt/ompi/bin/mpirun",), np_per_node=4, extra_args=("--bind-to", "none"),
                       wsclean_mp=("singularity", "exec", "ws.sif", "wsclean-mp"), export_env=())
    assert mpirun_prefix(custom, ("n1", "n2", "n3")) == [
        "/opt/ompi/bin/mpirun", "-host", "n1:4,n2:4,n3:4", "-np", "12", "--bind-to", "none",
        "singularity", "exec", "ws.sif", "wsclean-mp",
    ]
    assert parse_nodes_mpi("node[1-3],gpu1") == ("node1", "node2", "node3", "gpu1")
    for bad, message in (("node[3-1]", "bad range"), ("slurm", "'slurm' is not a node name"), ("-x,node1", "not a valid host name")):
        with pytest.raises(ConfigError, match=message):
            parse_nodes_mpi(bad)


DEFAULTS = ["-pol", "I", "-weight", "briggs", "0", "-data-column", "CORRECTED_DATA"]
"""nenucal's [wsclean] defaults, in every job's argv (the config does not set them)."""


@requires_wsclean
def test_dry_run_and_plan_show_the_mpirun_command_on_the_first_node(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config("[worker]\nnodes = 'localhost'\nmax_concurrent = 4\n" + CONFIG)
    res = run_imgpipe(cfg, a, b, "--nodes_mpi", "node1,node2", "--dry-run", "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["pool"] == ["node1"]
    assert plan["jobs"][0]["host"] == "node1"
    assert plan["jobs"][0]["argv"] == [
        "mpirun", "-host", "node1,node2", "-np", "2", "-x", "PATH", "-x", "LD_LIBRARY_PATH", "wsclean-mp",
        "-name", f"{tmp_path}/images/SW01.MS/img", *DEFAULTS, "-size", "128", "128", "-scale", "1amin", str(a),
    ]
    assert res.stdout.splitlines()[1].startswith("node1: mpirun -host node1,node2 -np 2 ")


@requires_wsclean
@pytest.mark.parametrize("args, message", [
    (["--nodes_mpi", "node[3-1]"], "imgpipe: error: --nodes_mpi 'node[3-1]': bad range"),
    (["--nodes_mpi", "dask"], "imgpipe: error: --nodes_mpi 'dask': 'dask' is not a node name"),
])
def test_bad_nodes_mpi_is_one_clear_error(run_imgpipe, write_config, ms_copy, args, message):
    (a,) = ms_copy("SW01.MS")
    res = run_imgpipe(write_config(CONFIG), a, *args)
    assert res.returncode == 2 and res.stderr.startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@requires_wsclean
def test_missing_wsclean_mp_is_found_before_any_job(run_imgpipe, write_config, ms_copy):
    (a,) = ms_copy("SW01.MS")
    res = run_imgpipe(write_config(CONFIG), a, "--nodes_mpi", "localhost")
    if shutil.which("wsclean-mp"):
        pytest.skip("this machine has a wsclean-mp")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("imgpipe: error: --nodes_mpi: wsclean-mp not found on localhost: Debian's wsclean package has no MPI build")
    assert len(res.stderr.strip().splitlines()) == 1 and not (a.parent / "images").exists()


@requires_wsclean
def test_missing_mpirun_is_one_clear_error(run_imgpipe, write_config, ms_copy, tmp_path):
    (a,) = ms_copy("SW01.MS")
    probe = tmp_path / "probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    cfg = write_config(f"[mpi]\nmpirun = 'no-such-mpirun'\nwsclean_mp = '{probe}'\n" + CONFIG)
    res = run_imgpipe(cfg, a, "--nodes_mpi", "localhost")
    assert res.returncode == 2
    assert res.stderr.startswith("imgpipe: error: --nodes_mpi: no-such-mpirun not found on localhost: install MPI there")


@requires_wsclean
@requires_mpirun
def test_real_mpirun_starts_every_rank_with_the_same_options_and_ms(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    probe = tmp_path / "wsclean-mp-probe"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    env_file = tmp_path / "env.sh"
    env_file.write_text("export IMGPIPE_MPI_MARKER=from-env-file\n")
    cfg = write_config(
        f"[worker]\nenv_file = '{env_file}'\n"
        f"[mpi]\nnp_per_node = 2\nwsclean_mp = '{probe}'\nextra_args = '{AS_ROOT}--oversubscribe'\n"
        "export_env = ['PATH', 'IMGPIPE_MPI_MARKER']\n" + CONFIG
    )
    res = run_imgpipe(cfg, a, b, "--nodes_mpi", "localhost")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "2 job(s): 2 ok, 0 failed" in res.stdout
    for ms in (a, b):
        prefix = tmp_path / "images" / ms.name / "img"
        ranks = [json.loads(prefix.with_name(f"img.rank{r}.json").read_text()) for r in range(2)]
        assert [r["rank"] for r in ranks] == [0, 1] and {r["size"] for r in ranks} == {2}
        assert ranks[0]["argv"] == ranks[1]["argv"] == ["-name", str(prefix), *DEFAULTS, "-size", "128", "128", "-scale", "1amin", str(ms)]
        assert {r["marker"] for r in ranks} == {"from-env-file"}  # env_file on the first node, -x to every rank
        log = prefix.with_name("img.log").read_text()
        assert "probe rank 0 of 2" in log and "probe rank 1 of 2" in log


@requires_wsclean
def test_an_env_file_that_fails_on_the_mpi_node_is_one_clear_error(run_imgpipe, write_config, ms_copy, tmp_path):
    (a,) = ms_copy("SW01.MS")
    cfg = write_config(f"[worker]\nenv_file = '{tmp_path}/no-such-env.sh'\n" + CONFIG)
    res = run_imgpipe(cfg, a, "--nodes_mpi", "localhost")
    assert res.returncode == 2
    assert res.stderr == f"imgpipe: error: localhost: env_file {tmp_path}/no-such-env.sh fails when sourced\n"


@requires_wsclean
def test_nodes_mpi_with_the_dask_runner_is_one_clear_error(run_imgpipe, write_config, ms_copy):
    (a,) = ms_copy("SW01.MS")
    res = run_imgpipe(write_config("[prefect]\ntask_runner = 'dask'\n" + CONFIG), a, "--nodes_mpi", "node1")
    assert res.returncode == 2
    assert res.stderr.startswith("imgpipe: error: ") and "--nodes_mpi does not go with [prefect] task_runner = 'dask'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


requires_wsclean_mp = pytest.mark.skipif(
    not os.access(WSCLEAN_MP, os.X_OK),
    reason=f"no wsclean-mp at {WSCLEAN_MP} (`make wsclean-mp` builds it from Debian's source: opt-in, ~40 min on 2 cores, not in CI)")
TOLERANCE = 1e-5
"""|MPI − plain| per pixel, as a fraction of the plain image's peak: float rounding only (measured 2e-7)."""


@requires_wsclean
@requires_mpirun
@requires_wsclean_mp
def test_real_wsclean_mp_over_two_sshd_nodes_images_as_plain_wsclean(healthy_nodes, run_imgpipe, write_config, ms_copy, tmp_path):
    """A real wsclean-mp (Debian's WSClean 3.1 source, built with MPI) started by mpirun on
    node101, one rank there and one on node102 (reached with the suite's ssh config): every
    channel image and the MFS image equal a plain WSClean run of the same argv, and the source
    is where it was simulated."""
    from astropy.io import fits

    from imgpipe.products.fits_peak import pixel_distance

    from support.sky import SOURCE_DEC, SOURCE_RA

    (a,) = ms_copy("SW01.MS")
    plain_ms = tmp_path / "plain-SW01.MS"
    shutil.copytree(a, plain_ms)  # the same visibilities for the plain run (WSClean writes MODEL_DATA into its MS)
    mca = shlex.join(loopback_mca(healthy_nodes.ssh_config))
    cfg = write_config(
        f"[worker]\nssh_config = '{healthy_nodes.ssh_config}'\n"
        f'[mpi]\nwsclean_mp = "{WSCLEAN_MP}"\nextra_args = "{AS_ROOT}{mca}"\n'
        "[wsclean]\nname = 'img'\nout-dir = 'images/$ms_basename$'\nsize = '128 128'\nscale = '1amin'\n"
        "niter = 200\nmgain = 0.8\nj = 1\nchannels-out = 4\njoin-channels = true\n")
    res = run_imgpipe(cfg, a, "--nodes_mpi", "node101,node102", "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert "1 job(s): 1 ok, 0 failed" in res.stdout
    out = tmp_path / "images" / "SW01.MS"
    log = (out / "img.log").read_text()
    assert "Node 0, PID" in log and "Node 1, PID" in log and "Worker node received exit message" in log
    argv = json.loads((tmp_path / "plan.json").read_text())["jobs"][0]["argv"]
    options = argv[argv.index(str(WSCLEAN_MP)) + 1:-1]
    options[options.index("-name") + 1] = str(tmp_path / "plain" / "img")
    (tmp_path / "plain").mkdir()
    plain = subprocess.run(["wsclean", *options, str(plain_ms)], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    for image in ("MFS-image", "0000-image", "0001-image", "0002-image", "0003-image", "MFS-residual"):
        mpi_pixels, plain_pixels = fits.getdata(out / f"img-{image}.fits"), fits.getdata(tmp_path / "plain" / f"img-{image}.fits")
        assert mpi_pixels.shape == plain_pixels.shape == (1, 1, 128, 128)
        assert abs(mpi_pixels - plain_pixels).max() <= TOLERANCE * abs(plain_pixels).max(), image
        if image.endswith("-image"):
            assert pixel_distance(str(out / f"img-{image}.fits"), SOURCE_RA, SOURCE_DEC) <= 1.0
