"""Config file parsing and every config error message."""

import pytest

from imgpipe.core.config import DEFAULT_OUT_DIR, load_config
from imgpipe.core.errors import ConfigError

MINIMAL = "[wsclean]\nname = 'img'\n"


def test_defaults(write_config):
    cfg = load_config(write_config(MINIMAL))
    assert cfg.worker.nodes == ("localhost",)
    assert cfg.worker.max_concurrent == 4
    assert cfg.worker.env_file is None and cfg.worker.dry_run is False
    assert cfg.worker.wsclean == ("wsclean",)
    assert cfg.data_handler is None
    assert cfg.name == "img" and cfg.out_dir == DEFAULT_OUT_DIR and cfg.options == ()


def test_cluster_keys(write_config, tmp_path):
    (tmp_path / "ssh_cfg").write_text("Host *\n")
    cfg = load_config(write_config(
        "[worker]\nnodes = 'node[1-2]'\nssh_config = 'ssh_cfg'\naccept_new_host_keys = true\nretries = 0\n"
        "retry_delay_seconds = 2.5\nretry_failed_jobs = true\nskip_unreachable_nodes = true\nhost_cooldown_s = 60\n"
        "max_time = '1h30m'\nkill_grace_s = 5\n" + MINIMAL
    ))
    w = cfg.worker
    assert w.ssh_config == str(tmp_path / "ssh_cfg") and w.accept_new_host_keys and w.retries == 0
    assert w.retry_delay == 2.5 and w.retry_failed_jobs and w.skip_unreachable_nodes and w.host_cooldown == 60.0
    assert w.max_time == 5400 and w.kill_grace == 5.0
    defaults = load_config(write_config(MINIMAL)).worker
    assert (defaults.retries, defaults.retry_delay, defaults.host_cooldown, defaults.kill_grace) == (2, 10.0, 10.0, 30.0)
    assert defaults.max_time is None and not defaults.accept_new_host_keys and not defaults.skip_unreachable_nodes
    slurm = load_config(write_config("[worker]\nnodes = 'slurm'\nslurm_options = '-p cpu -c 16 --mem=64G'\nslurm_nodes = 4\nmax_time = 7200\n" + MINIMAL)).worker
    assert slurm.nodes == ("slurm",) and slurm.slurm_options == ("-p", "cpu", "-c", "16", "--mem=64G") and slurm.slurm_nodes == 4
    assert slurm.max_time == 7200


def test_prefect_and_mpi_sections(write_config):
    default = load_config(write_config(MINIMAL))
    assert default.prefect.task_runner == "threads" and not default.prefect.dask
    assert default.mpi.mpirun == ("mpirun",) and default.mpi.wsclean_mp == ("wsclean-mp",) and default.mpi.np_per_node == 1
    assert default.mpi.export_env == ("PATH", "LD_LIBRARY_PATH") and default.mpi.max_concurrent == 1
    existing = load_config(write_config("[prefect]\ntask_runner = 'dask'\ndask_address = 'tcp://head:8786'\n[worker]\nnodes = 'n[1-2]'\n" + MINIMAL))
    assert existing.prefect.dask_address == "tcp://head:8786" and existing.worker.nodes == ("n1", "n2")
    assert not existing.prefect.local_dask
    jobqueue = load_config(write_config(
        "[prefect]\ntask_runner = 'dask'\ncluster_class = 'dask_jobqueue.SLURMCluster'\n"
        "[prefect.cluster_kwargs]\ncores = 16\nmemory = '64GB'\nqueue = 'cpu'\n" + MINIMAL
    ))
    assert jobqueue.worker.nodes == ("dask",)  # Dask places the jobs
    assert jobqueue.prefect.cluster_kwargs == (("cores", 16), ("memory", "64GB"), ("queue", "cpu"))
    assert load_config(write_config("[prefect]\ntask_runner = 'dask'\n" + MINIMAL)).prefect.local_dask
    mpi = load_config(write_config(
        "[mpi]\nmpirun = '/opt/ompi/bin/mpirun'\nnp_per_node = 2\nextra_args = '--bind-to none'\n"
        "wsclean_mp = 'singularity exec ws.sif wsclean-mp'\nexport_env = ['PATH']\nmax_concurrent = 2\n" + MINIMAL
    )).mpi
    assert mpi.mpirun == ("/opt/ompi/bin/mpirun",) and mpi.extra_args == ("--bind-to", "none")
    assert mpi.wsclean_mp == ("singularity", "exec", "ws.sif", "wsclean-mp") and mpi.export_env == ("PATH",)
    assert (mpi.np_per_node, mpi.max_concurrent) == (2, 2)


def test_full_config_keeps_option_order(write_config, tmp_path):
    cfg = load_config(
        write_config(
            """
[worker]
nodes = 'node[101-102]'
max_concurrent = 2
env_file = '~/env.sh'
dry_run = true
run_on_file_host = true
run_on_file_host_pattern = '/data/(n\\d+)/'
wsclean = 'singularity exec "/img dir/ws.sif" wsclean'
[data_handler]
config_file = 'dh.toml'
data_level = 'L1'
[wsclean]
size = '1024 1024'
name = 'img'
-scale = '1amin'
niter = 100
out-dir = '$obs_id$/$sw$'
multiscale = true
"""
        )
    )
    assert cfg.worker.nodes == ("node101", "node102")
    assert cfg.worker.wsclean == ("singularity", "exec", "/img dir/ws.sif", "wsclean")
    assert cfg.data_handler.config_file == tmp_path / "dh.toml"
    assert cfg.data_handler.data_level == "L1"
    assert [k for k, _ in cfg.options] == ["size", "scale", "niter", "multiscale"]
    assert cfg.out_dir == "$obs_id$/$sw$"


BAD = [
    ("[worker\nnodes = 'x'\n", r"invalid TOML: .*line 1, column"),
    ("[wsclean]\nname = 'img'\nsize = \n", r"invalid TOML: .*line 3"),
    ("[nodes]\n" + MINIMAL, r"unknown section \[nodes\]"),
    ("[worker]\nmax_concurent = 2\n" + MINIMAL, r"unknown key 'max_concurent' in \[worker\]"),
    ("[worker]\nmax_concurrent = 'four'\n" + MINIMAL, r"max_concurrent = 'four': must be an integer"),
    ("[worker]\nmax_concurrent = 0\n" + MINIMAL, r"max_concurrent = 0: must be at least 1"),
    ("[worker]\nmax_concurrent = true\n" + MINIMAL, r"must be an integer"),
    ("[worker]\ndry_run = 'yes'\n" + MINIMAL, r"dry_run = 'yes': must be true or false"),
    ("[worker]\nnodes = 'node[5-1]'\n" + MINIMAL, r"bad range"),
    ("[worker]\nwsclean = ''\n" + MINIMAL, r"wsclean is empty"),
    ("[worker]\nwsclean = 'a \"b'\n" + MINIMAL, r"No closing quotation"),
    ("[worker]\nrun_on_file_host_pattern = '/net/(node'\n" + MINIMAL, r"not a valid regex"),
    ("[worker]\nrun_on_file_host_pattern = '/net/node\\d+'\n" + MINIMAL, r"has no group"),
    ("[wsclean]\nsize = '10 10'\n", r"needs name"),
    ("[worker]\n", r"missing \[wsclean\] section"),
    ("[wsclean]\nname = 'a/b'\n", r"put directories in out-dir"),
    ("[wsclean]\nname = ''\n", r"name must be a non-empty string"),
    (MINIMAL + "[wsclean.sub]\nx = 1\n", r"sub is a table"),
    (MINIMAL + "weight = {mode = 'briggs'}\n", r"weight is a table"),
    (MINIMAL + "size = [[1, 2]]\n", r"array items must be strings or numbers"),
    (MINIMAL + "channels-out = 'some'\n", r"channels-out = 'some': expected a positive integer, 'all' or 'everyN'"),
    (MINIMAL + "channels-out = 0\n", r"channels-out = 0: must be at least 1"),
    (MINIMAL + "channels-out = 'every0'\n", r"expected a positive integer"),
    (MINIMAL + "channels-out = true\n", r"expected a positive integer"),
    (MINIMAL + "out-dir = '$ms_dir$/x'\n", r"unknown token \$ms_dir\$"),
    (MINIMAL + "out-dir = '$obs_id$'\n", r"\$obs_id\$ needs a \[data_handler\] section"),
    ("[wsclean]\nname = '$sw$'\n", r"\$sw\$ needs a \[data_handler\]"),
    ("[wsclean]\nname = '$name$'\n", r"unknown token \$name\$"),
    ("[data_handler]\ndata_level = 'L2'\n" + MINIMAL, r"needs config_file"),
    ("[data_handler]\nconfig_file = 'x'\nlevel = 'L2'\n" + MINIMAL, r"unknown key 'level' in \[data_handler\]"),
    (MINIMAL + "niter = 1\n-niter = 2\n", r"niter is given twice"),
    ("[worker]\nmax_time = '2 hours'\n" + MINIMAL, r"max_time = '2 hours': must be seconds \(a number\) or like '90s', '10m', '1h30m'"),
    ("[worker]\nmax_time = 0\n" + MINIMAL, r"max_time = 0: must be at least 1"),
    ("[worker]\nkill_grace_s = -1\n" + MINIMAL, r"kill_grace_s = -1: must not be negative"),
    ("[worker]\nretries = -1\n" + MINIMAL, r"retries = -1: must not be negative"),
    ("[worker]\nretry_delay_seconds = 'soon'\n" + MINIMAL, r"retry_delay_seconds = 'soon': must be seconds \(a number\) or like"),
    ("[worker]\nssh_config = 'no_such_file'\n" + MINIMAL, r"ssh_config = 'no_such_file': no such file"),
    ("[worker]\nslurm_options = '-p cpu'\n" + MINIMAL, r"slurm_options and slurm_nodes need nodes = 'slurm'"),
    ("[worker]\nnodes = 'slurm,node1'\n" + MINIMAL, r"'slurm' stands alone"),
    ("[worker]\nnodes = 'slurm'\nslurm_nodes = 0\n" + MINIMAL, r"slurm_nodes = 0: must be at least 1"),
    ("[worker]\nnodes = 'slurm'\nslurm_options = '-p \"cpu'\n" + MINIMAL, r"slurm_options = .*No closing quotation"),
    ("[worker]\nnodes = 'slurm'\nrun_on_file_host = true\n" + MINIMAL, r"run_on_file_host is not supported with nodes = 'slurm'"),
    ("[prefect]\ntask_runner = 'ray'\n" + MINIMAL, r"task_runner = 'ray': must be 'threads' or 'dask'"),
    ("[prefect]\ndask_address = 'tcp://h:8786'\n" + MINIMAL, r"dask_address needs task_runner = 'dask'"),
    ("[prefect]\ntask_runner = 'dask'\ndask_address = 'h'\n" + MINIMAL, r"dask_address = 'h': expected like 'tcp://host:8786'"),
    ("[prefect]\ntask_runner = 'dask'\ndask_address = 'tcp://h:1'\ncluster_class = 'a.B'\n" + MINIMAL, r"exclude each other"),
    ("[prefect]\ntask_runner = 'dask'\ncluster_class = 'SLURMCluster'\n" + MINIMAL, r"expected a dotted name"),
    ("[prefect]\ntask_runner = 'dask'\ncluster_kwargs = 3\n" + MINIMAL, r"cluster_kwargs = 3: must be a table"),
    ("[prefect]\ntask_runer = 'dask'\n" + MINIMAL, r"unknown key 'task_runer' in \[prefect\]"),
    ("[worker]\nnodes = 'dask'\n" + MINIMAL, r"'dask' stands alone and needs \[prefect\] task_runner = 'dask'"),
    ("[prefect]\ntask_runner = 'dask'\n[worker]\nnodes = 'slurm'\n" + MINIMAL, r"dask_jobqueue.SLURMCluster"),
    ("[prefect]\ntask_runner = 'dask'\n[worker]\nrun_on_file_host = true\n" + MINIMAL, r"run_on_file_host needs the nodes named"),
    ("[mpi]\nnp_per_node = 0\n" + MINIMAL, r"\[mpi\] np_per_node = 0: must be at least 1"),
    ("[mpi]\nmpirun = ''\n" + MINIMAL, r"\[mpi\] mpirun is empty"),
    ("[mpi]\nwsclean_mp = 'a \"b'\n" + MINIMAL, r"\[mpi\] wsclean_mp = .*No closing quotation"),
    ("[mpi]\nexport_env = ['PATH', 'A B']\n" + MINIMAL, r"export_env = \['PATH', 'A B'\]: 'A B' is not an environment variable name"),
    ("[mpi]\nexport_env = 'PATH'\n" + MINIMAL, r"export_env = 'PATH': must be an array"),
    ("[mpi]\nhosts = 'a'\n" + MINIMAL, r"unknown key 'hosts' in \[mpi\]"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_config_errors(write_config, text, message):
    path = write_config(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)  # every message names the file
    assert "\n" not in str(err.value)


def test_missing_unreadable_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a text"):
        load_config(binary)
