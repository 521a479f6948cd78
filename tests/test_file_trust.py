"""facts/file_trust: a file that names commands is used only when no other account can write it."""

import os

import pytest

from imgpipe.core.config import load_config
from imgpipe.core.config_commands import code_files, named_commands
from imgpipe.facts.file_trust import others_can_write

CONFIG = "[wsclean]\nname = 'img'\nout-dir = 'out'\n"


def test_a_file_of_this_user_in_a_folder_of_this_user_is_trusted(tmp_path):
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "c.toml").chmod(0o644)
    assert others_can_write(tmp_path / "c.toml") is None


@pytest.mark.parametrize("mode, why", [(0o664, "can be written by its group (mode 0664)"),
                                       (0o666, "can be written by every account (mode 0666)")])
def test_a_file_others_can_write_is_not(tmp_path, mode, why):
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "c.toml").chmod(mode)
    assert others_can_write(tmp_path / "c.toml") == f"file {tmp_path}/c.toml {why}"


def test_a_folder_others_can_write_is_not_even_sticky(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o1777)  # as /tmp: another account may create the file before you
    (folder / "c.toml").write_text(CONFIG)
    assert others_can_write(folder / "c.toml") == f"its folder {folder} can be written by every account (mode 1777)"


def test_a_link_is_judged_by_the_file_it_points_at(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "c.toml").write_text(CONFIG)
    (tmp_path / "real" / "c.toml").chmod(0o646)
    (tmp_path / "link.toml").symlink_to(tmp_path / "real" / "c.toml")
    assert others_can_write(tmp_path / "link.toml") == f"file {tmp_path}/real/c.toml can be written by every account (mode 0646)"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root")
def test_a_file_of_another_account_is_not(tmp_path):
    (tmp_path / "c.toml").write_text(CONFIG)
    os.chown(tmp_path / "c.toml", 65534, 65534)
    assert others_can_write(tmp_path / "c.toml") == f"file {tmp_path}/c.toml belongs to nobody"


def test_only_keys_that_name_code_and_differ_from_their_default_count(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[worker]\nwsclean = 'wsclean'\nmax_concurrent = 2\n" + CONFIG)
    assert named_commands(load_config(cfg)) == () and code_files(load_config(cfg)) == ()
    env = tmp_path / "env.sh"
    env.write_text("export A=1\n")
    cfg.write_text(f"[worker]\nwsclean = '/opt/ws/bin/wsclean'\nenv_file = '{env}'\n[mpi]\nmpirun = 'srun'\n"
                   "[prefect]\ntask_runner = 'dask'\ncluster_class = 'dask_jobqueue.SLURMCluster'\n" + CONFIG)
    config = load_config(cfg)
    assert named_commands(config) == ("[worker] env_file", "[worker] wsclean", "[prefect] cluster_class", "[mpi] mpirun")
    assert code_files(config) == (cfg, env)  # the env_file is sourced: code too


def test_a_base_config_is_code_with_the_config(tmp_path):
    (tmp_path / "base.toml").write_text("[worker]\nwsclean = '/opt/ws/bin/wsclean'\n")
    (tmp_path / "c.toml").write_text("default_settings = 'base.toml'\n" + CONFIG)
    config = load_config(tmp_path / "c.toml")
    assert named_commands(config) == ("[worker] wsclean",)
    assert code_files(config) == (tmp_path / "c.toml", tmp_path / "base.toml")
