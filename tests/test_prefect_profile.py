"""The Prefect server a user configured in a profile is the one a run uses (imgpipe.facts.prefect_profile)."""

from __future__ import annotations

import pytest

from imgpipe.facts.prefect_profile import configured_api_url, profiles_path

PROFILES = """active = "team"

[profiles.team]
PREFECT_API_URL = "http://team-server:4200/api"

[profiles.laptop]
PREFECT_SERVER_EPHEMERAL_ENABLED = "true"
"""


@pytest.fixture
def profiles(tmp_path):
    path = tmp_path / "home" / "profiles.toml"
    path.parent.mkdir()
    path.write_text(PROFILES)
    return path


def test_the_environment_comes_first(profiles):
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(profiles.parent)}
    assert configured_api_url(env) == "http://127.0.0.1:9/api"


def test_the_active_profile_of_prefect_home(profiles):
    assert configured_api_url({"PREFECT_HOME": str(profiles.parent)}) == "http://team-server:4200/api"


def test_prefect_profile_and_profiles_path_choose(profiles, tmp_path):
    home = {"PREFECT_HOME": str(profiles.parent)}
    assert configured_api_url({**home, "PREFECT_PROFILE": "laptop"}) is None
    assert configured_api_url({**home, "PREFECT_PROFILE": "no-such-profile"}) is None
    elsewhere = tmp_path / "other.toml"
    elsewhere.write_text('active = "x"\n[profiles.x]\nPREFECT_API_URL = "http://x:1/api"\n')
    assert configured_api_url({**home, "PREFECT_PROFILES_PATH": str(elsewhere)}) == "http://x:1/api"
    assert profiles_path({}).name == "profiles.toml"


@pytest.mark.parametrize("text", ["", "active = [1,", 'active = "team"\nprofiles = 3\n', 'active = 5\n[profiles.team]\nPREFECT_API_URL = "u"\n'])
def test_missing_or_malformed_profiles_mean_no_server(tmp_path, text):
    (tmp_path / "profiles.toml").write_text(text)
    assert configured_api_url({"PREFECT_HOME": str(tmp_path)}) is None
    assert configured_api_url({"PREFECT_HOME": str(tmp_path / "absent")}) is None


def _one_job(tmp_path, fake):
    """A config imaging one MS with the fake WSClean; (config, MS)."""
    ms = tmp_path / "data" / "SW01.MS"
    ms.mkdir(parents=True)
    cfg = tmp_path / "img.toml"
    cfg.write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/images'\n")
    return cfg, ms


def test_a_run_goes_to_the_server_of_the_active_profile(run_imgpipe, fake_wsclean, tmp_path):
    """No PREFECT_API_URL in the environment, a profile naming a running `prefect server`:
    the run is recorded there (before, imgpipe started a private server and the run was
    missing from the shared history)."""
    from support.prefect_server import api, running_server

    fake, _ = fake_wsclean
    cfg, ms = _one_job(tmp_path, fake)
    with running_server(tmp_path / "server-home", tmp_path / "server.log") as server_env:
        profile = tmp_path / "profiles.toml"
        profile.write_text(f'active = "team"\n[profiles.team]\nPREFECT_API_URL = "{server_env["PREFECT_API_URL"]}"\n'
                           f'PREFECT_API_AUTH_STRING = "{server_env["PREFECT_API_AUTH_STRING"]}"\n')
        res = run_imgpipe(cfg, ms, env={"PREFECT_PROFILES_PATH": str(profile)})
        assert res.returncode == 0, res.stderr[-3000:]
        runs = api(server_env, "POST", "/flow_runs/filter", {})
    assert [r["name"] for r in runs] == ["img.toml SW01.MS · 1 job"]
    assert runs[0]["state_type"] == "COMPLETED"


def test_a_server_that_wants_an_auth_string_not_given_is_one_clear_line(run_imgpipe, fake_wsclean, tmp_path):
    """A locked-down server (docs/deployments.md) and no PREFECT_API_AUTH_STRING: one line
    saying what to set, exit 2, no traceback, no job run."""
    from support.prefect_server import running_server

    fake, trace = fake_wsclean
    cfg, ms = _one_job(tmp_path, fake)
    with running_server(tmp_path / "server-home", tmp_path / "server.log") as server_env:
        res = run_imgpipe(cfg, ms, env={"PREFECT_API_URL": server_env["PREFECT_API_URL"], "PREFECT_API_AUTH_STRING": ""})
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not trace.exists()  # no job ran
    assert res.stderr.strip().startswith(
        f"imgpipe: error: the Prefect server at {server_env['PREFECT_API_URL']} refused imgpipe (401 Unauthorized): "
        "set PREFECT_API_AUTH_STRING to its auth string"), res.stderr
