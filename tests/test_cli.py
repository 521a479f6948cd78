"""The command line without running jobs: help, version, dry run, plan JSON, bad input."""

import json
import subprocess
import sys

import pytest

from imgpipe.core.job_resources import Ask, abs_mem_gb, give
from imgpipe.facts.node_capacity import local_capacity

from support.markers import requires_wsclean

CONFIG = """
[wsclean]
name = 'img'
out-dir = '$ms_basename$/images'
size = '64 64'
scale = '1amin'
"""


def test_help_and_version_do_not_import_heavy_modules():
    code = (
        "import sys\nfrom imgpipe.cli.command import main\n"
        "for args in (['--help'], ['--version']):\n"
        "    try:\n        main(args, prog_name='imgpipe')\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'casacore', 'astropy', 'paramiko', 'numpy'})\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage: imgpipe [OPTIONS] CONFIG_FILE MS_INS_OR_OBS_IDS..." in out
    assert "--combine_obs_ids" in out and "--nodes_mpi" in out and "--plan-json" in out
    assert "imgpipe, version" in out
    assert out.strip().endswith("HEAVY []")


@requires_wsclean
def test_dry_run_prints_quoted_commands_and_creates_nothing(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    weird = tmp_path / "my obs; touch pwned.MS"
    a.rename(weird)
    cfg = write_config(CONFIG)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = run_imgpipe(cfg, weird, b, "--dry-run")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    given = give(Ask(None, ("j", "abs-mem"), None, 2), local_capacity(), "localhost")
    defaults = "-pol I -weight briggs 0 -data-column CORRECTED_DATA"  # nenucal's, applied as the original does
    # each job's share of this machine, shown as it will be given (see test_job_resources)
    share = f"-j {given.cores} -abs-mem {abs_mem_gb(given.mem_mb)}"
    assert lines == [
        f"localhost: wsclean -name '{weird}/images/img' {defaults} -size 64 64 -scale 1amin {share} '{weird}'",
        f"localhost: wsclean -name {b}/images/img {defaults} -size 64 64 -scale 1amin {share} {b}",
    ]
    assert ("imgpipe: note: [wsclean] defaults of nenucal's imgpipe applied: pol = 'I', weight = 'briggs 0', "
            "data-column = 'CORRECTED_DATA' (set a key to change it, or to false to drop it)") in res.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "pwned").exists()
    assert ("dry run: 2 job(s): 2 would run on 1 node(s) (localhost), 0 of them replacing earlier images; "
            "0 done before; 0 refused; nothing was run or written") in res.stderr

    # a complete record of these MSs made by another command (a [wsclean] value changed): said
    import json

    (b / "images").mkdir()
    (b / "images" / "img.imgpipe.json").write_text(json.dumps({"complete": True, "ms": [str(b)], "plan_argv": ["x"]}))
    res = run_imgpipe(cfg, weird, b, "--dry-run")
    assert res.stdout.strip().splitlines()[1].endswith("  # its earlier images, made by another command, would be replaced")
    assert "2 would run on 1 node(s) (localhost), 1 of them replacing earlier images" in res.stderr


@requires_wsclean
def test_dry_run_from_config_and_plan_json(run_imgpipe, write_config, ms_copy, tmp_path):
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config("[worker]\ndry_run = true\n" + CONFIG + "channels-out = 'all'\n")
    res = run_imgpipe(cfg, a, b, "--combine", "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    (job,) = plan["jobs"]
    given = give(Ask(None, ("j", "abs-mem"), None, 1), local_capacity(), "localhost")  # one job: the whole machine
    assert job["argv"][-8:] == ["-channels-out", "8", "-j", str(given.cores), "-abs-mem", abs_mem_gb(given.mem_mb), str(a), str(b)]
    assert job == {"host": "localhost", "argv": job["argv"], "ms": [str(a), str(b)], "obs_id": None, "sw": None,
                   "out_dir": f"{b}/images", "temp_dir": None, "resources": given.to_json(),
                   "env": dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), str(given.cores))}
    assert res.stdout.startswith("localhost: wsclean -name")
    assert not (b / "images").exists()
    assert plan["nodes"] == {"localhost": {"cores": local_capacity().cores, "memory_mib": local_capacity().mem_mb,
                                           "limited_by": local_capacity().limited_by}}


@requires_wsclean
def test_the_plan_says_which_node_sizes_are_known_before_connecting(run_imgpipe, write_config, ms_copy, tmp_path):
    """A plan does not connect: an SSH node's size is 'known when reached', SLURM's what
    slurm_options asks of each step."""
    a, b = ms_copy("SW01.MS", "SW02.MS")
    cfg = write_config("[worker]\nnodes = 'node7'\ndry_run = true\n" + CONFIG)
    assert run_imgpipe(cfg, a, b, "--plan-json", tmp_path / "plan.json").returncode == 0
    nodes = json.loads((tmp_path / "plan.json").read_text())["nodes"]
    assert nodes == {"node7": "known when imgpipe reaches the node (a plan or a dry run does not connect)"}
    cfg.write_text(cfg.read_text().replace("nodes = 'node7'", "nodes = 'slurm'\nslurm_options = '-c 4 --mem=16G'"))
    assert run_imgpipe(cfg, a, b, "--plan-json", tmp_path / "plan.json").returncode == 0
    nodes = json.loads((tmp_path / "plan.json").read_text())["nodes"]
    assert nodes == {"slurm": {"cores": 4, "memory_mib": 16384, "limited_by": "slurm_options"}}


@requires_wsclean
def test_combine_obs_ids_alone_warns(run_imgpipe, write_config, ms_copy):
    (a,) = ms_copy("SW01.MS")
    res = run_imgpipe(write_config(CONFIG), a, "-o", "--dry-run")
    assert res.returncode == 0
    assert "warning: --combine_obs_ids has no effect without a [data_handler] section" in res.stderr


@requires_wsclean
def test_the_dry_run_refuses_what_the_run_would_a_category_bigger_than_this_machine(run_imgpipe, write_config, ms_copy):
    """Issue 45: 12. The node's size is known without connecting, so the dry run says it."""
    (a,) = ms_copy("SW01.MS")
    cfg = write_config("[worker.resources]\nheavy = {cpus = 1, mem = '999999GB'}\n" + CONFIG)
    dry, real = run_imgpipe(cfg, a, "--dry-run"), run_imgpipe(cfg, a)
    for res in (dry, real):
        assert res.returncode == 2 and "Traceback" not in res.stderr, (res.stdout, res.stderr)
        assert res.stderr.strip().startswith("imgpipe: error: SW01.MS @ localhost: category heavy asks for 1 core(s) and "
                                             "999999.0 GiB, more than any node it may run on has (localhost "), res.stderr
    assert dry.stdout == "" and dry.stderr.strip().splitlines()[-1] == real.stderr.strip().splitlines()[-1]


@requires_wsclean
def test_an_ms_without_the_data_column_is_one_clear_line(run_imgpipe, write_config, ms_copy, tmp_path):
    """Issue 45: 13, at the command line: exit 2, one line naming the file, key, value, MS and
    its columns; nothing written (no plan JSON), the dry run the same."""
    from casacore import tables

    a, b = ms_copy("SW01.MS", "SW02.MS")
    with tables.table(str(b), readonly=False, ack=False) as t:
        t.removecols(["CORRECTED_DATA"])
    cfg = write_config(CONFIG)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for extra in ((), ("--dry-run",)):
        res = run_imgpipe(cfg, a, b, "--plan-json", tmp_path / "plan.json", *extra)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (res.stdout, res.stderr)
        assert res.stderr.strip().splitlines() == [
            f"imgpipe: error: {cfg}: [wsclean] data-column = 'CORRECTED_DATA' (nenucal's default): Measurement Set {b} "
            "has no CORRECTED_DATA column (its data columns: DATA); set data-column to a column the MSs have"]
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before


DH_OK = (
    "[data_level_path]\nL2 = '{tmp}/L2'\n[spectral_windows]\nSW01 = [1, 2]\nSW02 = [3, 4]\n"
    "[obs_ids]\n'20231201_A' = ['n1', 'n2']\n"
)
WITH_DH = "[data_handler]\nconfig_file = 'dh.toml'\n" + CONFIG.replace("$ms_basename$", "$obs_id$_$sw$")

# (config text, CLI args, message, extra files): the whole catalogue of bad input of issue 6.
BAD_INPUT = [
    ("[wsclean\nname = 'x'\n", ["x.MS"], r"invalid TOML: .* \(at line 1, column 9\)", {}),
    ("[nodes]\n" + CONFIG, ["{ms}"], r"unknown section \[nodes\]", {}),
    ("[worker]\nmax_concurent = 2\n" + CONFIG, ["{ms}"], r"unknown key 'max_concurent' in \[worker\]", {}),
    ("[worker]\nmax_concurrent = 'four'\n" + CONFIG, ["x.MS"], r"max_concurrent = 'four': must be an integer", {}),
    ("[worker]\nmax_concurrent = 0\n" + CONFIG, ["x.MS"], r"max_concurrent = 0: must be at least 1", {}),
    ("default_settings = 'imgpipe.toml'\n" + CONFIG, ["{ms}"], r"default_settings makes a loop", {}),
    ("[worker.resources]\nheavy = {cpus = 4, mem = 'lots'}\n" + CONFIG, ["{ms}"], r"\[worker.resources\] heavy: mem = 'lots'", {}),
    (CONFIG + "auto-treshold = 3\n", ["{ms}"], r"did you mean -auto-threshold\?", {}),
    (CONFIG + "[wsclean.weight]\nmode = 'briggs'\n", ["{ms}"], r"\[wsclean\] weight is a table", {}),
    (CONFIG + "channels-out = 'some'\n", ["{ms}"], r"channels-out = 'some': expected a positive integer, 'all' or 'everyN'", {}),
    (CONFIG.replace("$ms_basename$/images", "$ms_dir$/images"), ["{ms}"], r"unknown token \$ms_dir\$", {}),
    (CONFIG.replace("$ms_basename$", "$obs_id$"), ["{ms}"], r"\$obs_id\$ needs a \[data_handler\] section", {}),
    ("[worker]\nrun_on_file_host_pattern = '/net/(node'\n" + CONFIG, ["{ms}"], r"run_on_file_host_pattern '/net/\(node' is not a valid regex", {}),
    ("[worker]\nrun_on_file_host_pattern = '/net/node'\n" + CONFIG, ["{ms}"], r"run_on_file_host_pattern '/net/node' has no group", {}),
    ("[data_handler]\nconfig_file = 'nope.toml'\n" + CONFIG, ["2023*"], r"data handler file not found: .*nope.toml", {}),
    (WITH_DH, ["2023*"], r"dh.toml: missing section \[spectral_windows\]", {"dh.toml": "[data_level_path]\nL2 = '/x'\n[obs_ids]\n'a' = ['n']\n"}),
    (WITH_DH, ["2023*"], r"dh.toml: .*SW01 = \[5, 2\]", {"dh.toml": DH_OK.replace("[1, 2]", "[5, 2]")}),
    (WITH_DH, ["2023*"], r"20231201_A.* 1 node.* 2 spectral window", {"dh.toml": DH_OK.replace("['n1', 'n2']", "['n1']")}),
    (WITH_DH, ["2024*"], r"pattern '2024\*' matches no obs_id", {"dh.toml": DH_OK}),
    (WITH_DH, ["2023*"], r"dh.toml: \[data_levels\] replaces \[data_level_path\]", {"dh.toml": DH_OK + "[data_levels.L3]\npath = '/x'\n"}),
    (WITH_DH, ["2023*"], r"dh.toml: unknown key 'subband' in \[data_levels.L2\]",
     {"dh.toml": DH_OK.replace("[data_level_path]\nL2 = ", "[data_levels.L2]\nsubband = true\npath = ")}),
    (CONFIG, ["{tmp}/missing.MS"], r"Measurement Set not found: .*missing.MS", {}),
    (CONFIG + "channels-out = 'all'\n", ["{tmp}/notms.MS"], r"not a Measurement Set \(no table.dat\): .*notms.MS", {"notms.MS/readme.txt": "hello"}),
    (CONFIG, ["{ms}", "--nodes_mpi", "node[2-1]"], r"--nodes_mpi .node\[2-1\].: bad range", {}),
    (CONFIG, ["{tmp}/{{tomorrow}}.MS"], r"unknown date token \{tomorrow\}", {}),
]


@requires_wsclean
@pytest.mark.parametrize("text, args, message, files", BAD_INPUT)
def test_bad_input_is_one_clear_line(run_imgpipe, write_config, ms_copy, tmp_path, text, args, message, files):
    import re

    (ms,) = ms_copy("SW01.MS")
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content.format(tmp=tmp_path))
    cfg = write_config(text)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    res = run_imgpipe(cfg, *[a.format(ms=ms, tmp=tmp_path) for a in args], "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert re.search(r"^imgpipe: error: " + message, res.stderr.strip()) or re.search(message, res.stderr), res.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing half-written, no plan.json


def test_unreachable_node_is_named_before_anything_runs(run_imgpipe, write_config, ms_copy, tmp_path):
    """Nothing listens at node101's address: one line naming the node and the address, exit 2, within seconds."""
    import socket
    import time

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "ssh_config").write_text(f"Host node101\n  HostName 127.0.0.1\n  Port {port}\n")
    (ms,) = ms_copy("SW01.MS")
    cfg = write_config("[worker]\nnodes = 'node101'\nssh_config = 'ssh_config'\nretries = 0\n" + CONFIG)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    res = run_imgpipe(cfg, ms)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        f"imgpipe: error: cannot reach 1 node(s): node101: connection refused at 127.0.0.1:{port} (is sshd running there?) "
        "(set [worker] skip_unreachable_nodes = true to run on the other nodes)"
    )
    assert time.monotonic() - t0 < 5  # before Prefect starts
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@requires_wsclean
def test_a_refused_node_is_reported_in_seconds_even_with_the_default_retries(run_imgpipe, write_config, ms_copy, tmp_path):
    """At a terminal, one quick retry (1 s), not [worker] retries × retry_delay (2 × 10 s):
    those stay for deployment runs, whose node may be back a minute later."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "ssh_config").write_text(f"Host node101\n  HostName 127.0.0.1\n  Port {port}\n")
    (ms,) = ms_copy("SW01.MS")
    cfg = write_config("[worker]\nnodes = 'node101'\nssh_config = 'ssh_config'\n" + CONFIG)
    t0 = time.monotonic()
    res = run_imgpipe(cfg, ms)
    took = time.monotonic() - t0
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"imgpipe: warning: node101: connection refused at 127.0.0.1:{port} (is sshd running there?); retry 1 of 1 in 1 s"
    assert lines[-1].startswith("imgpipe: error: cannot reach 1 node(s): node101: connection refused")
    assert 1 <= took < 5


@requires_wsclean
def test_a_node_name_that_does_not_resolve(run_imgpipe, write_config, ms_copy, tmp_path):
    """Run inside a network namespace of our own (no interface up): the name lookup fails
    there, and no packet can leave this machine."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -rn)")
    (ms,) = ms_copy("SW01.MS")
    cfg = write_config("[worker]\nnodes = 'nosuchnode.invalid'\nretries = 0\n" + CONFIG)
    env = run_imgpipe.base_env()
    res = subprocess.run(["unshare", "-rn", sys.executable, "-m", "imgpipe", str(cfg), str(ms)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("imgpipe: error: cannot reach 1 node(s): nosuchnode.invalid: host name nosuchnode.invalid does not resolve")
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_config_file(run_imgpipe, tmp_path):
    res = run_imgpipe(tmp_path / "none.toml", "x.MS")
    assert res.returncode == 2 and res.stderr.strip() == f"imgpipe: error: config file not found: {tmp_path}/none.toml"


def test_unknown_cli_option(run_imgpipe, tmp_path):
    res = run_imgpipe("--combien", "c.toml", "x.MS")
    assert res.returncode == 2 and "No such option '--combien'" in res.stderr and "Traceback" not in res.stderr


@requires_wsclean
def test_nightly_example_plans_on_the_file_hosts(run_imgpipe, tmp_path):
    from support.paths import REPO

    res = run_imgpipe(REPO / "examples" / "nightly.toml", "2023120*", "--combine", "--dry-run", "--plan-json", tmp_path / "p.json")
    assert res.returncode == 0, res.stderr
    jobs = json.loads((tmp_path / "p.json").read_text())["jobs"]
    assert [(j["host"], j["obs_id"], j["sw"]) for j in jobs] == [
        ("node101", "20231201_NT04", "SW01"), ("node102", "20231201_NT04", "SW02"), ("node103", "20231201_NT04", "SW03"),
        ("node102", "20231202_NT04", "SW01"), ("node103", "20231202_NT04", "SW02"), ("node104", "20231202_NT04", "SW03"),
    ]
    assert jobs[0]["argv"][:3] == ["wsclean", "-name", "/net/node101/images/20231201_NT04/SW01"]
    assert jobs[0]["ms"] == ["/net/node101/data/L2/2023/12/20231201_NT04/SW01.MS"]
    assert res.stdout.splitlines()[0].startswith("node101: wsclean -name /net/node101/images/20231201_NT04/SW01")


@requires_wsclean
def test_an_embedded_prefect_server_that_cannot_start_is_one_clear_line(run_imgpipe, write_config, ms_copy, tmp_path):
    (ms,) = ms_copy("SW01.MS")
    res = run_imgpipe(write_config(CONFIG), ms, env={"PREFECT_API_DATABASE_CONNECTION_URL": "nosuchdb://x"})
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "imgpipe: error: the embedded Prefect server did not start (exited with 1): "
        "sqlalchemy.exc.NoSuchModuleError: Can't load plugin: sqlalchemy.dialects:nosuchdb"
    ), res.stderr
    assert not (tmp_path / "SW01.MS" / "images").exists()  # nothing was run


def test_the_run_s_signal_handlers_are_undone_however_it_ends():
    import signal

    from imgpipe.cli.command import handling_signals

    def mine(signum, frame):
        pass

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with handling_signals(mine):
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with pytest.raises(RuntimeError), handling_signals(mine):
        raise RuntimeError("the run failed")
    assert {sig: signal.getsignal(sig) for sig in before} == before


@requires_wsclean
def test_a_config_naming_commands_that_others_can_write_is_refused(run_imgpipe, write_config, ms_copy, tmp_path):
    """As OpenSSH's StrictModes: the named command never runs, one line names the file and its mode."""
    from imgpipe.facts.file_trust import this_user

    (ms,) = ms_copy("SW01.MS")
    marker = tmp_path / "ran"
    cfg = write_config(f"[worker]\nwsclean = 'sh -c \"touch {marker}\"'\n" + CONFIG)
    cfg.chmod(0o664)
    res = run_imgpipe(cfg, ms, "--dry-run")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.strip() == (
        f"imgpipe: error: {cfg}: names commands imgpipe runs as {this_user()} ([worker] wsclean), but file {cfg} can be "
        "written by its group (mode 0664): a config that names commands, the files it names and their folders must "
        "be writable by you alone (chmod go-w; see docs/deployments.md)")
    assert not marker.exists()
    env = tmp_path / "env.sh"  # the env_file is sourced by bash: code as well
    env.write_text("export A=1\n")
    env.chmod(0o666)
    cfg.write_text(f"[worker]\nenv_file = '{env}'\n" + CONFIG)
    cfg.chmod(0o600)
    res = run_imgpipe(cfg, ms, "--dry-run")
    assert res.returncode == 2 and f"but file {env} can be written by every account (mode 0666)" in res.stderr, res.stderr
    cfg.write_text("[worker]\nmax_concurrent = 2\n" + CONFIG)  # names no command: a shared config is fine
    cfg.chmod(0o666)
    assert run_imgpipe(cfg, ms, "--dry-run").returncode == 0


def test_a_dry_run_runs_no_wsclean_the_config_names(run_imgpipe, write_config, ms_copy, tmp_path):
    """Its option list comes from the cache of an earlier run of that WSClean, or is not checked."""
    ms = tmp_path / "SW01.MS"
    ms.mkdir()
    marker = tmp_path / "ran"
    cfg = write_config(f"[worker]\nwsclean = 'sh -c \"touch {marker}\"'\n" + CONFIG)
    res = run_imgpipe(cfg, ms, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    assert ("imgpipe: warning: WSClean option names not checked: a dry run does not run the config's [worker] wsclean "
            f"(sh -c touch {marker}); the run checks them before any job starts") in res.stderr
    assert res.stdout.startswith(f"localhost: sh -c 'touch {marker}' -name ")


def test_a_missing_prefect_internal_is_one_warning_line_and_other_warnings_are_python_s(capsys):
    from imgpipe.cli.command import _say_missing_internal
    from imgpipe.orchestration.prefect_internals import PrefectInternalMissing

    shown = []
    say = _say_missing_internal(lambda *args, **kwargs: shown.append(args))
    say(PrefectInternalMissing("the installed Prefect has no X: Y"), PrefectInternalMissing, "f.py", 1)
    say(UserWarning("other"), UserWarning, "f.py", 2)
    assert capsys.readouterr().err == "imgpipe: warning: the installed Prefect has no X: Y\n"
    assert len(shown) == 1 and shown[0][1] is UserWarning
