"""Preparing a run: one function for the CLI and the flow, and what Prefect records of it."""

from __future__ import annotations

import os

import pytest

from imgpipe.core.errors import ImgpipeError
from imgpipe.core.request import RunRequest
from imgpipe.prepare import prepare_run


def test_a_prepared_run_is_recorded_by_prefect_as_a_summary_not_every_job(tmp_path):
    from fastapi.encoders import jsonable_encoder  # what Prefect records flow parameters with

    mss = []
    for i in range(3):
        (tmp_path / f"SW0{i}.MS").mkdir()
        mss.append(str(tmp_path / f"SW0{i}.MS"))
    cfg = tmp_path / "img.toml"
    cfg.write_text("[wsclean]\nname = 'img'\nout-dir = '$ms_basename$'\nsize = '64 64'\n")
    request = RunRequest(str(cfg), tuple(mss), cwd=str(tmp_path))
    prepared = prepare_run(request)
    assert [job.ms for job in prepared.plan.jobs] == [(m,) for m in mss]
    assert prepared.inputs == tuple(mss) and prepared.down is None and not prepared.mpi_checked
    assert jsonable_encoder(prepared) == {"planned_by": "imgpipe command line", "jobs": 3}
    assert jsonable_encoder(request.flow_parameters())["patterns"] == mss
    checked = prepared.checked(down={"node2": "refused"}).checked(mpi=True)
    assert checked.down == {"node2": "refused"} and checked.mpi_checked and checked.plan is prepared.plan


def test_date_tokens_are_expanded_for_the_run_s_date(tmp_path):
    from datetime import datetime, timezone

    (tmp_path / "20231201_SW01.MS").mkdir()
    cfg = tmp_path / "img.toml"
    cfg.write_text("[wsclean]\nname = 'img'\n")
    request = RunRequest(str(cfg), ("{yesterday}_SW01.MS",), cwd=str(tmp_path))
    prepared = prepare_run(request, when=datetime(2023, 12, 2, 8, 0, tzinfo=timezone.utc))
    assert prepared.inputs == ("20231201_SW01.MS",)
    assert prepared.plan.jobs[0].ms == (os.path.join(str(tmp_path), "20231201_SW01.MS"),)


def test_bad_input_is_one_error(tmp_path):
    with pytest.raises(ImgpipeError, match="config file not found"):
        prepare_run(RunRequest(str(tmp_path / "missing.toml"), ("x.MS",), cwd=str(tmp_path)))
