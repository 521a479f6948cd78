"""Hostile names never reach a shell; secrets never reach logs, plans, records or reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_ssh import node_config

from support.markers import requires_wsclean
from support.prefect_logs import logs_of_last_flow_run

pytestmark = [requires_wsclean, pytest.mark.prefect]

EVIL = "x'\"; touch PWNED; $(touch PWNED2) `touch PWNED3` & touch PWNED4 |"


def pwned(*folders: Path) -> list[str]:
    return [str(f / n) for f in folders for n in ("PWNED", "PWNED2", "PWNED3", "PWNED4") if (f / n).exists()]


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_hostile_obs_id_and_patterns_run_nothing(where, healthy_nodes, run_imgpipe, fake_wsclean, tmp_path):
    """An obs_id full of shell syntax, resolved by the data handler into MS paths, on this
    machine and on an SSH node: WSClean gets it as one argument, and nothing else runs."""
    fake, trace = fake_wsclean
    obs_id = f"2023_{EVIL}"
    node = "node101"
    (tmp_path / "dh.toml").write_text(
        f"[data_level_path]\nL2 = '{tmp_path}/net/%NODE%/%OBS_ID%'\n[spectral_windows]\nSW01 = [1, 1]\n"
        f"[obs_ids]\n{json.dumps(obs_id)} = ['{node}']\n"
    )
    ms = tmp_path / "net" / node / obs_id / "SW01.MS"
    ms.mkdir(parents=True)
    body = (
        "[data_handler]\nconfig_file = 'dh.toml'\n"
        f"[wsclean]\nname = '$sw$'\nout-dir = '{tmp_path}/out/$obs_id$'\n"
    )
    worker = dict(nodes=f"'{node if where == 'ssh' else 'localhost'}'", wsclean=f"'{fake}'", env_file=json.dumps(f"{tmp_path}/{EVIL}.sh"))
    (tmp_path / f"{EVIL}.sh").write_text("export IMGPIPE_FROM_ENV=1\n")
    cfg = node_config(healthy_nodes, tmp_path, body, **worker)
    res = run_imgpipe(cfg, "2023_*", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    log = (tmp_path / "out" / obs_id / "SW01.log").read_text()
    # (nenucal's [wsclean] defaults, then the job's share of the node, come between -name and the MS)
    said = re.sub(r" -j \d+ -abs-mem [\d.]+ ", " ", log.strip())
    assert said.endswith(f"-name {tmp_path}/out/{obs_id}/SW01 -pol I -weight briggs 0 -data-column CORRECTED_DATA {ms}")
    assert " -j " in log and " -abs-mem " in log
    assert f"fake wsclean on {node if where == 'ssh' else 'local'}" in log
    # a hostile pattern is only ever matched against the data handler's obs_ids
    res = run_imgpipe(cfg, "; touch PWNED; $(touch PWNED2)", cwd=tmp_path)
    assert res.returncode == 2 and "matches no obs_id" in res.stderr
    assert pwned(tmp_path, Path.home(), Path("/")) == []


def test_secrets_stay_out_of_logs_plans_records_and_reports(healthy_nodes, run_imgpipe, ms_copy, tmp_path):
    """A secret in the env_file and the private key of the SSH login appear nowhere imgpipe writes."""
    secret = "hunter2-SECRET-7f3a"
    env_file = tmp_path / "env.sh"
    env_file.write_text(f"export ARCHIVE_TOKEN={secret}\n")
    (a,) = ms_copy("SW01.MS")
    body = f"[wsclean]\nname = 'img'\nout-dir = '{tmp_path}/out'\nsize = '64 64'\nscale = '2amin'\nniter = 10\nj = 1\n"
    cfg = node_config(healthy_nodes, tmp_path, body, nodes="'node101'", env_file=f"'{env_file}'")
    res = run_imgpipe(cfg, a, "--plan-json", tmp_path / "plan.json")
    assert res.returncode == 0, res.stderr[-3000:]
    key_lines = [line for line in healthy_nodes.key.read_text().splitlines() if line and not line.startswith("-----")]
    written = [res.stdout, res.stderr, *(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.suffix in (".log", ".json", ".html")),
               (tmp_path / "plan.json").read_text(), "\n".join(logs_of_last_flow_run(run_imgpipe.base_env()))]
    for text in written:
        assert secret not in text
        assert not any(line in text for line in key_lines)
    assert any("Writing restored image" in text for text in written)  # (the job's output is among what was searched)
