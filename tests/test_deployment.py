"""The nightly deployment, for real: `prefect server start` on 127.0.0.1, a process work
pool and worker, `prefect deploy` from this repository, `prefect deployment run` with a
parameter override, wait for Completed, check the image. Everything started is stopped."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from support.deployment import (
    deploy_manual,
    final_state,
    first_job_pid,
    prefect,
    run_deployment,
    run_logs,
    start_worker,
    summary_artifact,
)
from support.markers import requires_wsclean
from support.paths import REPO
from support.postgres import running_postgres, why_no_postgres
from support.prefect_server import PREFECT, api, running_server, stop_group
from support.processes import alive
from support.sky import SOURCE_DEC, SOURCE_RA

pytestmark = [requires_wsclean, pytest.mark.prefect]


@pytest.fixture(params=["sqlite", "postgresql"])
def prefect_server(request, tmp_path):
    """A real Prefect server on 127.0.0.1 with its own PREFECT_HOME, on its default SQLite
    database or on a PostgreSQL of its own (as a team's shared server); yields the env to
    talk to it."""
    with contextlib.ExitStack() as stack:
        server_env, database = {}, None
        if request.param == "postgresql":
            if why := why_no_postgres():
                pytest.skip(why)
            database = stack.enter_context(running_postgres())
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.url
        try:
            env = stack.enter_context(running_server(tmp_path / "prefect-server-home", tmp_path / "server.log", server_env))
        except RuntimeError as err:
            pytest.fail(str(err))
        yield env
        if database is not None:  # the runs are in PostgreSQL, not in a SQLite file
            assert int(database.query("SELECT count(*) FROM flow_run")) > 0
            assert not (tmp_path / "prefect-server-home" / "prefect.db").exists()


def test_nightly_deployment_runs_for_real(prefect_server, sim_dir, tmp_path):
    env = {**prefect_server, "IMGPIPE_REPO": str(REPO), "IMGPIPE_CONFIG": str(tmp_path / "nightly.toml")}
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y%m%d")
    data = tmp_path / "data"
    shutil.copytree(sim_dir / "SW01.MS", data / f"{yesterday}_SW01.MS")
    (tmp_path / "nightly.toml").write_text(
        f"[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/images/$ms_basename$'\nsize = '128 128'\nscale = '1amin'\nniter = 100\nj = 1\n"
    )
    prefect(env, "work-pool", "create", "imgpipe", "--type", "process")
    prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "nightly")
    deployment = api(env, "GET", "/deployments/name/imgpipe/nightly")
    schedule = deployment["schedules"][0]["schedule"]
    assert schedule["cron"] == "0 8 * * *" and schedule["timezone"] == "UTC"
    assert deployment["parameters"]["patterns"] == ["{yesterday}_*"]
    # one night at a time: a Late night waits for the one before it
    limit = deployment["global_concurrency_limit"]
    assert limit["limit"] == 1 and deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"

    worker = start_worker(env, tmp_path)
    try:
        run_id = run_deployment(env, "imgpipe/nightly", f"patterns={json.dumps([str(data / '{yesterday}_SW01.MS')])}", "combine=false")
        state = final_state(env, run_id, 300)
        assert state == "COMPLETED", (state, (tmp_path / "worker.log").read_text()[-4000:])
    finally:
        stop_group(worker)
    from imgpipe.products.fits_peak import pixel_distance

    image = tmp_path / "images" / f"{yesterday}_SW01.MS" / "img-image.fits"
    assert pixel_distance(str(image), SOURCE_RA, SOURCE_DEC) <= 1.0
    artifacts = api(env, "POST", "/artifacts/filter", {"artifacts": {"key": {"any_": ["imgpipe-summary"]}}})
    assert any(f"{yesterday}_SW01.MS" in (a.get("data") or "") for a in artifacts)
    # the night's report is named by the night it imaged, and says it
    report = tmp_path / "images" / f"report-{yesterday}.html"
    assert f"<title>night {yesterday}: imgpipe run nightly.toml {yesterday}_SW01.MS" in report.read_text()
    assert f"report-{yesterday}.html" in (tmp_path / "images" / "reports.html").read_text()
    # the run is named after what it imaged, not a random Prefect name
    assert api(env, "GET", f"/flow_runs/{run_id}")["name"] == f"nightly.toml {yesterday}_SW01.MS · 1 job"


NIGHT_HANDLER = """
[data_level_path]
L2 = '{root}/%OBS_ID%'
[spectral_windows]
SW01 = [106, 145]
[obs_ids]
'20261101_NT04' = ['localhost']
"""


def test_quiet_nights_bad_input_and_every_runs_record(prefect_server, fake_wsclean, tmp_path):
    """A night with no data ends Completed (or Failed when asked), a bad config Failed:
    each with one line, its artifact, and no traceback in the flow run's log."""
    fake, _ = fake_wsclean
    env = {**prefect_server, "IMGPIPE_REPO": str(REPO), "IMGPIPE_CONFIG": str(tmp_path / "nightly.toml")}
    (tmp_path / "data" / "20261101_NT04").mkdir(parents=True)  # a listed night whose MSs never came
    (tmp_path / "dh.toml").write_text(NIGHT_HANDLER.format(root=tmp_path / "data"))
    (tmp_path / "nightly.toml").write_text(
        f"[worker]\nwsclean = '{fake}'\n[data_handler]\nconfig_file = '{tmp_path / 'dh.toml'}'\ndata_level = 'L2'\n"
        f"[wsclean]\nname = '$sw$'\nout-dir = '{tmp_path}/images/$obs_id$'\n"
    )
    (tmp_path / "images").mkdir()
    (tmp_path / "bad.toml").write_text("[worker]\nmax_concurent = 2\n")
    prefect(env, "work-pool", "create", "imgpipe", "--type", "process")
    prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "nightly")
    worker = start_worker(env, tmp_path)
    try:
        runs = {
            "unobserved": run_deployment(env, "imgpipe/nightly", 'patterns=["{yesterday}_*"]'),
            "not arrived": run_deployment(env, "imgpipe/nightly", 'patterns=["20261101_*"]'),
            "paged": run_deployment(env, "imgpipe/nightly", 'patterns=["{yesterday}_*"]', "fail_when_no_data=true"),
            "bad config": run_deployment(env, "imgpipe/nightly", f"config={json.dumps(str(tmp_path / 'bad.toml'))}"),
            "mistyped": run_deployment(env, "imgpipe/nightly", 'patterns=["20261129_*"]'),
        }
        states = {what: final_state(env, run_id, 300) for what, run_id in runs.items()}
    finally:
        stop_group(worker)
    assert states == {"unobserved": "COMPLETED", "not arrived": "COMPLETED", "paged": "FAILED", "bad config": "FAILED",
                      "mistyped": "FAILED"}, (tmp_path / "worker.log").read_text()[-4000:]
    messages = {what: api(env, "GET", f"/flow_runs/{run_id}")["state"]["message"] for what, run_id in runs.items()}
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y%m%d")
    assert messages["unobserved"].startswith(f"no data: pattern '{yesterday}_*' matches no obs_id in ")
    # a quiet night is found by its date as well: its name, its report
    assert api(env, "GET", f"/flow_runs/{runs['unobserved']}")["name"] == f"nightly.toml {yesterday}_*"
    assert (tmp_path / "images" / f"report-{yesterday}.html").exists()
    # a night named by its date, not by {yesterday}, that holds nothing: a mistake
    assert messages["mistyped"].startswith("pattern '20261129_*' matches no obs_id in ")
    assert messages["mistyped"].endswith(": a pattern without {yesterday} or {today} that matches nothing is a mistake, "
                                         "not a quiet night")
    assert messages["not arrived"] == (f"no data yet: SW01 20261101_NT04: Measurement Set {tmp_path}/data/20261101_NT04/SW01.MS "
                                       "not found, skipped (no data yet)")
    assert messages["paged"].endswith("(fail_when_no_data)")
    assert "unknown key 'max_concurent' in [worker]" in messages["bad config"]
    for what, run_id in runs.items():
        logs = run_logs(env, run_id)
        assert not any("Traceback" in line for line in logs), (what, [line for line in logs if "Traceback" in line])
        artifact = summary_artifact(env, run_id)
        assert "**0 ok, 0 failed**" in artifact and "looked for " in artifact, (what, artifact)
    assert f"no data: pattern '{yesterday}_*'" in summary_artifact(env, runs["unobserved"])
    assert "not run: " in summary_artifact(env, runs["bad config"])
    assert list((tmp_path / "images").glob("report-*.html"))  # quiet nights leave a report where the images go


def test_cancelling_a_deployment_run_stops_its_wsclean(prefect_server, fake_wsclean, tmp_path):
    """Cancel in Prefect (what the UI's Cancel does): the worker stops the flow process, and
    imgpipe stops the running WSClean before it goes; the run ends Cancelled, with its
    artifact and report, the job's reason and real time, and no file of WSClean left."""
    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("300")
    trace.with_suffix(".products").touch()  # the fake writes a dirty image and a *-tmp.fits
    env, ms = deploy_manual(prefect_server, fake, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        run_id = run_deployment(env, "imgpipe/manual", f"patterns={json.dumps([str(ms)])}")
        pid = first_job_pid(trace)
        api(env, "POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
        state = final_state(env, run_id, 120)
        assert state == "CANCELLED", (state, (tmp_path / "worker.log").read_text()[-4000:])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.2)
        assert not alive(pid), "WSClean survived the cancellation"
    finally:
        stop_group(worker)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".fits") == []  # no -tmp.fits, no partial image
    record = json.loads((out / "img.imgpipe.json").read_text())
    assert record["complete"] is False and record["partial_images"] == "removed"
    assert sorted(record["removed"]) == ["img-0000-dirty.fits", "img-model-I-0000-tmp.fits"]
    assert record["reason"].startswith("cancelled by a cancel in Prefect") and record["duration_s"] > 0
    artifact = summary_artifact(env, run_id)
    # the job's time in the artifact is its real time up to the stop, as in its record
    assert f"| obs.MS @ localhost | CANCELLED | {record['duration_s']:.1f} s |" in artifact, artifact
    assert "stopped by a cancel in Prefect" in artifact
    assert "**0 ok, 0 failed, 1 cancelled**" in artifact  # a cancelled job is no failure
    assert "cancelled by a cancel in Prefect" in artifact
    assert list(out.glob("report-*.html"))
    logs = run_logs(env, run_id)
    assert any(line.startswith("cancelled: cancelled by a cancel in Prefect") for line in logs), logs


def test_a_stranger_s_parameters_run_nothing_and_write_nothing(prefect_server, fake_wsclean, tmp_path):
    """What anyone who reaches the API could try (docs/deployments.md, "Who may start a
    run"): the server refuses a request without its auth string; `plan_json` is no
    parameter (it wrote the plan over any file); a config outside the deployment's folder,
    or one in it that others can write, is refused before anything it names runs."""
    import urllib.error

    fake, _ = fake_wsclean
    folder = tmp_path / "deployed"
    folder.mkdir(mode=0o755)
    env = {**prefect_server, "IMGPIPE_REPO": str(REPO), "IMGPIPE_CONFIG": str(folder / "nightly.toml")}
    ms = tmp_path / "obs.MS"
    ms.mkdir()
    (folder / "nightly.toml").write_text(f"[worker]\nwsclean = '{fake}'\n[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out'\n")
    marker = tmp_path / "pwned"
    evil = f"[worker]\nwsclean = 'sh -c \"id > {marker}\"'\n[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out'\n"
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    (tmp_path / "elsewhere" / "evil.toml").write_text(evil)
    (folder / "shared.toml").write_text(evil)
    (folder / "shared.toml").chmod(0o664)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    prefect(env, "work-pool", "create", "imgpipe", "--type", "process")
    prefect(env, "deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "manual")
    deployment = api(env, "GET", "/deployments/name/imgpipe/manual")
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(env, "POST", f"/deployments/{deployment['id']}/create_flow_run", {}, auth=False)
    assert refused.value.code == 403  # CSRF protection: no token (a token needs the auth string)
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(env, "GET", f"/deployments/{deployment['id']}", auth=False)
    assert refused.value.code == 401
    res = subprocess.run([PREFECT, "--no-prompt", "deployment", "run", "imgpipe/manual", "--param", f"plan_json={victim}",
                          "--param", f"patterns={json.dumps([str(ms)])}"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode != 0 and "plan_json" in res.stdout + res.stderr, res.stdout + res.stderr
    worker = start_worker(env, tmp_path)
    try:
        runs = {what: run_deployment(env, "imgpipe/manual", f"patterns={json.dumps([str(ms)])}",
                                     f"config={json.dumps(str(path))}")
                for what, path in (("outside", tmp_path / "elsewhere" / "evil.toml"), ("writable", folder / "shared.toml"))}
        states = {what: final_state(env, run_id, 300) for what, run_id in runs.items()}
    finally:
        stop_group(worker)
    assert states == {"outside": "FAILED", "writable": "FAILED"}, (tmp_path / "worker.log").read_text()[-4000:]
    messages = {what: api(env, "GET", f"/flow_runs/{run_id}")["state"]["message"] for what, run_id in runs.items()}
    assert messages["outside"] == (f"config {tmp_path}/elsewhere/evil.toml is not in the folder of deployment 'manual''s "
                                   f"config ({folder}): a deployment run uses only configs from the folder it was deployed with")
    assert f"but file {folder}/shared.toml can be written by its group (mode 0664)" in messages["writable"]
    assert "[worker] wsclean" in messages["writable"]
    assert not marker.exists() and victim.read_text() == "keep me"
    assert not (tmp_path / "out").exists()


def test_a_worker_killed_outright_leaves_its_night_to_finish(prefect_server, fake_wsclean, tmp_path):
    """SIGKILL to the worker alone: its flow run's process is orphaned, with a console that
    no one reads any more. The night goes on: WSClean runs to its end, the record is
    complete, the run ends Completed with its artifact, and no traceback is logged."""
    import os
    import signal

    fake, trace = fake_wsclean
    trace.with_suffix(".seconds").write_text("20")
    env, ms = deploy_manual(prefect_server, fake, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        run_id = run_deployment(env, "imgpipe/manual", f"patterns={json.dumps([str(ms)])}")
        pid = first_job_pid(trace)
        os.kill(worker.pid, signal.SIGKILL)  # the worker only: its flow run's process goes on
        worker.wait()
        state = final_state(env, run_id, 120)
        assert state == "COMPLETED", (state, run_logs(env, run_id)[-30:])
        assert not alive(pid)
    finally:
        stop_group(worker)
    record = json.loads((tmp_path / "out" / "img.imgpipe.json").read_text())
    assert record["status"] == "ok", record
    assert "| obs.MS @ localhost | OK |" in summary_artifact(env, run_id)
    logs = run_logs(env, run_id)
    assert not any("Traceback" in line or "BrokenPipeError" in line for line in logs), logs
