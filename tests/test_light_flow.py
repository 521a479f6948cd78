"""The imgpipe flow records its parameters as Prefect's encoder would, without FastAPI."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

SCRIPT = r"""
import json, sys
from imgpipe.core.request import RunRequest
from imgpipe.orchestration.flow import imgpipe_flow
from imgpipe.prepare import prepare_run

prepared = prepare_run(RunRequest(sys.argv[1], (sys.argv[2],), cwd=sys.argv[3]))
params = {**prepared.request.flow_parameters(), "prepared": prepared, "backends": None}
recorded = imgpipe_flow.serialize_parameters(params)
print(json.dumps({"recorded": recorded, "fastapi": "fastapi" in sys.modules}))
"""


def test_plain_parameters_and_the_prepared_run_are_recorded_without_loading_fastapi(tmp_path):
    import json

    from fastapi.encoders import jsonable_encoder  # what Prefect records flow parameters with

    (tmp_path / "SW01.MS").mkdir()
    cfg = tmp_path / "img.toml"
    cfg.write_text("[wsclean]\nname = 'img'\nout-dir = '$ms_basename$'\nsize = '64 64'\n")
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg), str(tmp_path / "SW01.MS"), str(tmp_path)],
                         capture_output=True, text=True, check=True)
    out = json.loads(res.stdout)
    assert out["fastapi"] is False
    from imgpipe.core.request import RunRequest
    from imgpipe.prepare import prepare_run

    prepared = prepare_run(RunRequest(str(cfg), (str(tmp_path / "SW01.MS"),), cwd=str(tmp_path)))
    expected = jsonable_encoder({**prepared.request.flow_parameters(), "prepared": prepared, "backends": None})
    assert out["recorded"] == expected
    assert out["recorded"]["prepared"] == {"planned_by": "imgpipe command line", "jobs": 1}


def test_other_values_still_go_through_prefects_encoding():
    from imgpipe.orchestration.flow import imgpipe_flow

    recorded = imgpipe_flow.serialize_parameters({"config": "img.toml", "when": date(2026, 12, 5), "patterns": ("a", "b")})
    assert recorded == {"config": "img.toml", "when": "2026-12-05", "patterns": ["a", "b"]}
    assert list(recorded) == ["config", "when", "patterns"]
