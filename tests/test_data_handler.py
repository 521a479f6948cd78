"""Data handler: directory templates, MS names, patterns, errors."""

import pytest

from imgpipe.core.data_handler import load_data_handler
from imgpipe.core.errors import DataHandlerError

DH = """
[data_level_path]
L1 = '/net/%NODE%/data/L1'
L2 = '/net/%NODE%/data/L2/%YEAR%/%MONTH%'
L2_BP = '/data/%OBS_ID%/bp'
[spectral_windows]
SW01 = [106, 108]
SW02 = [146, 147]
SW_ALL = ['SW01', 'SW02']
[obs_ids]
'20231201_NT04' = ['node101', 'node102']
'20231202_NT04' = ['node103', 'node104']
'20240115_XYZ' = ['node101', 'node101']
"""


@pytest.fixture
def dh(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH)
    return load_data_handler(path)


def paths(selections):
    return [m.path for s in selections for m in s.ms]


def test_l2_directory_and_ms_name(dh):
    sel = dh.select(["20231201_NT04"], "L2")
    assert [(s.obs_id, s.sw) for s in sel] == [("20231201_NT04", "SW01"), ("20231201_NT04", "SW02")]
    assert paths(sel) == [
        "/net/node101/data/L2/2023/12/20231201_NT04/SW01.MS",
        "/net/node102/data/L2/2023/12/20231201_NT04/SW02.MS",
    ]


def test_l1_gives_one_ms_per_subband(dh):
    sel = dh.select(["20231201_NT04:SW01"], "L1")
    assert paths(sel) == [f"/net/node101/data/L1/20231201_NT04/SB{sb}.MS" for sb in (106, 107, 108)]


def test_obs_id_token_in_template_is_not_appended(dh):
    assert paths(dh.select(["20240115_XYZ:SW02"], "L2_BP")) == ["/data/20240115_XYZ/bp/SW02.MS"]


def test_composite_sw_concatenates_members(dh):
    sel = dh.select(["20231202_NT04:SW_ALL"], "L2")
    assert [(s.obs_id, s.sw) for s in sel] == [("20231202_NT04", "SW_ALL")]
    assert paths(sel) == [
        "/net/node103/data/L2/2023/12/20231202_NT04/SW01.MS",
        "/net/node104/data/L2/2023/12/20231202_NT04/SW02.MS",
    ]


def test_patterns_globs_order_and_no_repeats(dh):
    sel = dh.select(["2023*:SW02", "20231201_NT04,2024*"], "L2")
    # obs_ids then SWs, in file order, each (obs_id, sw) once
    assert [(s.obs_id, s.sw) for s in sel] == [
        ("20231201_NT04", "SW01"),
        ("20231201_NT04", "SW02"),
        ("20231202_NT04", "SW02"),
        ("20240115_XYZ", "SW01"),
        ("20240115_XYZ", "SW02"),
    ]


def test_without_sw_glob_composites_are_left_out(dh):
    assert {s.sw for s in dh.select(["*"], "L2")} == {"SW01", "SW02"}
    assert {s.sw for s in dh.select(["*:SW*"], "L2")} == {"SW01", "SW02", "SW_ALL"}


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("2022*", r"pattern '2022\*' matches no obs_id"),
        ("2023*:SW9*", r"'SW9\*' matches no spectral window"),
        (":SW01", r"no obs_id glob"),
    ],
)
def test_pattern_errors(dh, pattern, message):
    with pytest.raises(DataHandlerError, match=message):
        dh.select([pattern], "L2")


def test_unknown_level(dh):
    with pytest.raises(DataHandlerError, match=r"data level 'L3' not in \[data_level_path\]"):
        dh.select(["2023*"], "L3")


def test_obs_id_without_date_with_year_template(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH.replace("'20240115_XYZ'", "'calib_XYZ'"))
    with pytest.raises(DataHandlerError, match="does not start with YYYYMMDD"):
        load_data_handler(path).select(["calib*"], "L2")


def test_relative_template_is_read_against_the_file(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH.replace("'/data/%OBS_ID%/bp'", "'store/%OBS_ID%'"))
    assert paths(load_data_handler(path).select(["20240115_XYZ:SW01"], "L2_BP")) == [
        f"{tmp_path}/store/20240115_XYZ/SW01.MS"
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        (DH.replace("[obs_ids]", "[obsids]"), r"missing section \[obs_ids\]"),
        (DH.replace("SW02 = [146, 147]", "SW02 = [147, 146]"), r"SW02 = \[147, 146\]: expected \[first, last\]"),
        (DH.replace("SW02 = [146, 147]", "SW02 = [146]"), r"expected \[first, last\]"),
        (DH.replace("SW02 = [146, 147]", "SW02 = 'x'"), r"expected \[first, last\]"),
        (DH.replace("['node103', 'node104']", "['node103']"), r"'20231202_NT04' lists 1 node\(s\) for 2 spectral windows"),
        (DH.replace("['SW01', 'SW02']", "['SW01', 'SW05']"), r"lists 'SW05', which is not"),
        (DH.replace("L1 = '/net", "L1 = 3 #"), r"\[data_level_path\] L1 must be"),
        ("[x\n", r"invalid TOML"),
    ],
)
def test_file_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "dh.toml"
    path.write_text(text)
    with pytest.raises(DataHandlerError, match=message) as err:
        load_data_handler(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataHandlerError, match="data handler file not found"):
        load_data_handler(tmp_path / "none.toml")
