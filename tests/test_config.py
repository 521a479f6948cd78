"""Config file parsing and every config error message."""

import pytest

from imgpipe.core.config import DEFAULT_OUT_DIR, load_config
from imgpipe.core.errors import ConfigError

from support.nenucal_style import nenucal_style

MINIMAL = "[wsclean]\nname = 'img'\n"


def test_defaults(write_config):
    cfg = load_config(write_config(MINIMAL))
    assert cfg.worker.nodes == ("localhost",)
    assert cfg.worker.max_concurrent == 4
    assert cfg.worker.env_file is None and cfg.worker.dry_run is False
    assert cfg.worker.wsclean == ("wsclean",)
    assert cfg.data_handler is None
    assert cfg.name == "img" and cfg.out_dir == DEFAULT_OUT_DIR
    # nenucal's [wsclean] defaults, as its imgpipe applies them under every config
    assert cfg.options == (("pol", "I"), ("weight", "briggs 0"), ("data-column", "CORRECTED_DATA"))
    assert cfg.defaults_used == ("pol", "weight", "data-column")


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
    # nenucal's defaults not set here first, then the file's keys in file order (libpipe's merge)
    assert [k for k, _ in cfg.options] == ["pol", "weight", "data-column", "size", "scale", "niter", "multiscale"]
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
    ("[wsclean]\nname = false\n", r"\[wsclean\] name must be a non-empty string"),
    ("[wsclean]\nname = 'img'\n-name = 'x'\n", r"\[wsclean\] name is given twice"),
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
    ("[worker]\nnodes = 'slurm'\nslurm_nodes = -1\n" + MINIMAL, r"slurm_nodes = -1: must not be negative"),
    ("[worker]\nnodes = 'slurm'\nslurm_options = '-p \"cpu'\n" + MINIMAL, r"slurm_options = .*No closing quotation"),
    ("[worker]\nnodes = 'slurm'\nrun_on_file_host = true\n" + MINIMAL, r"run_on_file_host is not supported with nodes = 'slurm'"),
    ("[prefect]\ntask_runner = 'ray'\n" + MINIMAL, r"task_runner = 'ray': must be 'threads' or 'dask'"),
    ("[prefect]\nserver = 'kep'\n" + MINIMAL, r"\[prefect\] server = 'kep': must be 'embedded' or 'kept'"),
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
    ("[worker]\ntemp_dir = 'scratch'\n" + MINIMAL, r"\[worker\] temp_dir = 'scratch': must be an absolute path"),
    ("[worker]\ntemp_dir = '/s/$night$'\n" + MINIMAL, r"\[worker\] temp_dir: unknown token \$night\$"),
    ("[worker]\ntemp_dir = '/s/$obs_id$'\n" + MINIMAL, r"\[worker\] temp_dir: \$obs_id\$ needs a \[data_handler\] section"),
    ("[worker]\ntemp_min_free = 'lots'\n" + MINIMAL, r"temp_min_free = 'lots': must be a size such as '10GB'"),
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


# --- what nenucal's imgpipe accepts, with the same meaning ---------------------------------

def test_a_config_in_nenucal_s_style_loads_with_its_meaning(write_config):
    cfg = load_config(write_config(nenucal_style("size = '512 512'\n")))
    w = cfg.worker
    assert w.env_file is None and w.run_on_file_host_pattern is None and w.slurm_nodes is None and not w.debug
    assert cfg.data_handler is None  # config_file = '': MS paths, as the original
    # its empty [worker.resources]: no category, so fair shares (heavy's 12 cores and 40 GB
    # would be given on any machine otherwise); the defaults stay reachable by name
    assert w.resources == () and w.job_category() is None
    named = load_config(write_config(nenucal_style("size = '512 512'\n").replace("[worker.resources]", "category = 'heavy'\n[worker.resources]"))).worker
    assert (named.job_category().cpus, named.job_category().mem_mb) == (12, 40 * 1024)
    assert cfg.name == "img" and dict(cfg.options)["weight"] == "briggs 0"


def test_scratch_keys(write_config):
    worker = load_config(write_config("[worker]\ntemp_dir = '$ms_in$/../scratch'\ntemp_min_free = '2GB'\n" + MINIMAL)).worker
    assert (worker.temp_dir, worker.temp_min_free) == ("$ms_in$/../scratch", 2048)
    default = load_config(write_config(MINIMAL)).worker
    assert (default.temp_dir, default.temp_min_free) == (None, 10240)
    assert load_config(write_config("[worker]\ntemp_min_free = 0\n" + MINIMAL)).worker.temp_min_free == 0


def test_resource_categories_in_the_original_format(write_config):
    cfg = load_config(write_config("[worker.resources]\nheavy = {cpus = 16, mem = '64GB'}\nmedium = {mem = '100GB'}\n"
                                   "gpu = {cpus = 4, mem = '512MB'}\n" + MINIMAL))
    got = {c.name: (c.cpus, c.mem_mb) for c in cfg.worker.resources}
    # given ones replace the defaults; every category but heavy is capped at heavy's
    assert got == {"small": (1, 2048), "medium": (4, 64 * 1024), "high_mem": (2, 16384), "cpu": (12, 8192),
                   "heavy": (16, 64 * 1024), "gpu": (4, 512)}


@pytest.mark.parametrize("table, message", [
    ("heavy = {cpus = 12, mem = 'lots'}", r"\[worker.resources\] heavy: mem = 'lots': expected a memory such as '40GB'"),
    ("heavy = {cpus = 0, mem = '4GB'}", r"heavy: cpus = 0: must be an integer of at least 1"),
    ("gpu = {cpus = 2}", r"gpu: give cpus and mem"),
    ("heavy = {cpu = 2, mem = '4GB'}", r"heavy: unknown key 'cpu' \(known: cpus, mem\)"),
    ("heavy = 12", r"heavy = 12: must be a table"),
])
def test_resource_errors(write_config, table, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(f"[worker.resources]\n{table}\n" + MINIMAL))


def test_the_original_wsclean_defaults_apply_unless_set_and_false_drops_one(write_config):
    cfg = load_config(write_config("[wsclean]\nweight = 'uniform'\npol = false\nniter = 10\n"))
    assert cfg.name == "img"
    assert cfg.options == (("data-column", "CORRECTED_DATA"), ("pol", False), ("weight", "uniform"), ("niter", 10))
    assert cfg.defaults_used == ("name", "data-column")


def test_default_settings_chains_the_files_under_the_config(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "root.toml").write_text("[worker]\nmax_concurrent = 8\nretries = 5\n[wsclean]\nsize = '2048 2048'\nniter = 1\n")
    (tmp_path / "site" / "base.toml").write_text("default_settings = 'root.toml'\n[worker]\nretries = 1\n[wsclean]\nniter = 100\n")
    (tmp_path / "img.toml").write_text("default_settings = 'site/base.toml'\n[wsclean]\nscale = '1amin'\nniter = 1000\n")
    cfg = load_config(tmp_path / "img.toml")
    assert (cfg.worker.max_concurrent, cfg.worker.retries) == (8, 1)  # nearest file wins
    assert dict(cfg.options)["niter"] == 1000 and dict(cfg.options)["size"] == "2048 2048"
    assert dict(cfg.options)["scale"] == "1amin"


@pytest.mark.parametrize("files, message", [
    ({"a.toml": "default_settings = 'b.toml'\n", "b.toml": "default_settings = 'a.toml'\n"}, r"default_settings makes a loop: .*a.toml → .*b.toml → .*a.toml"),
    ({"a.toml": "default_settings = 'none.toml'\n"}, r"a.toml: default_settings = 'none.toml': no such file"),
    ({"a.toml": "default_settings = 3\n"}, r"a.toml: default_settings = 3: must be the path of a config file"),
])
def test_default_settings_errors(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.toml")


def test_the_data_handler_file_is_read_beside_the_config_or_else_from_the_working_directory(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "run").mkdir()
    cfg_path = tmp_path / "conf" / "img.toml"
    cfg_path.write_text("[data_handler]\nconfig_file = 'dh.toml'\n" + MINIMAL)
    (tmp_path / "run" / "dh.toml").write_text("")
    only_cwd = load_config(cfg_path, cwd=str(tmp_path / "run"))
    assert only_cwd.data_handler.config_file == tmp_path / "run" / "dh.toml"
    (warning,) = only_cwd.warnings
    assert str(tmp_path / "conf" / "dh.toml") in warning and str(tmp_path / "run" / "dh.toml") in warning
    (tmp_path / "conf" / "dh.toml").write_text("")
    beside = load_config(cfg_path, cwd=str(tmp_path / "run"))
    assert beside.data_handler.config_file == tmp_path / "conf" / "dh.toml" and beside.warnings == ()
