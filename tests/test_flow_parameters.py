"""What a flow run records of its parameters: plain values, and the command line's own objects as their summaries."""

from __future__ import annotations

from datetime import date

from imgpipe.core.request import RunRequest
from imgpipe.orchestration.flow import imgpipe_flow
from imgpipe.prepare import prepare_run


def test_the_prepared_run_is_recorded_as_its_summary(tmp_path):
    (tmp_path / "SW01.MS").mkdir()
    cfg = tmp_path / "img.toml"
    cfg.write_text("[wsclean]\nname = 'img'\nout-dir = '$ms_basename$'\nsize = '64 64'\n")
    prepared = prepare_run(RunRequest(str(cfg), (str(tmp_path / "SW01.MS"),), cwd=str(tmp_path)))
    recorded = imgpipe_flow.serialize_parameters({**prepared.request.flow_parameters(), "prepared": prepared,
                                                   "backends": None})
    assert recorded["prepared"] == {"planned_by": "imgpipe command line", "jobs": 1}
    assert recorded["config"] == str(cfg) and recorded["patterns"] == [str(tmp_path / "SW01.MS")]


def test_other_values_go_through_prefects_encoding():
    recorded = imgpipe_flow.serialize_parameters({"config": "img.toml", "when": date(2026, 12, 5), "patterns": ("a", "b")})
    assert recorded == {"config": "img.toml", "when": "2026-12-05", "patterns": ["a", "b"]}
