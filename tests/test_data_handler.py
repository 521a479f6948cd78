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


def NO_CHUNKS(folder, sw, lst):
    return []


def paths(selections):
    return [m.path for s in selections for m in s.ms]


def test_l2_directory_and_ms_name(dh):
    sel = dh.select(["20231201_NT04"], "L2", NO_CHUNKS)
    assert [(s.obs_id, s.sw) for s in sel] == [("20231201_NT04", "SW01"), ("20231201_NT04", "SW02")]
    assert paths(sel) == [
        "/net/node101/data/L2/2023/12/20231201_NT04/SW01.MS",
        "/net/node102/data/L2/2023/12/20231201_NT04/SW02.MS",
    ]


def test_l1_gives_one_ms_per_subband(dh):
    sel = dh.select(["20231201_NT04:SW01"], "L1", NO_CHUNKS)
    assert paths(sel) == [f"/net/node101/data/L1/20231201_NT04/SB{sb}.MS" for sb in (106, 107, 108)]


def test_obs_id_token_in_template_is_not_appended(dh):
    assert paths(dh.select(["20240115_XYZ:SW02"], "L2_BP", NO_CHUNKS)) == ["/data/20240115_XYZ/bp/SW02.MS"]


def test_composite_sw_concatenates_members(dh):
    sel = dh.select(["20231202_NT04:SW_ALL"], "L2", NO_CHUNKS)
    assert [(s.obs_id, s.sw) for s in sel] == [("20231202_NT04", "SW_ALL")]
    assert paths(sel) == [
        "/net/node103/data/L2/2023/12/20231202_NT04/SW01.MS",
        "/net/node104/data/L2/2023/12/20231202_NT04/SW02.MS",
    ]


def test_patterns_globs_order_and_no_repeats(dh):
    sel = dh.select(["2023*:SW02", "20231201_NT04,2024*"], "L2", NO_CHUNKS)
    # obs_ids then SWs, in file order, each (obs_id, sw) once
    assert [(s.obs_id, s.sw) for s in sel] == [
        ("20231201_NT04", "SW01"),
        ("20231201_NT04", "SW02"),
        ("20231202_NT04", "SW02"),
        ("20240115_XYZ", "SW01"),
        ("20240115_XYZ", "SW02"),
    ]


def test_without_sw_glob_composites_are_left_out(dh):
    assert {s.sw for s in dh.select(["*"], "L2", NO_CHUNKS)} == {"SW01", "SW02"}
    assert {s.sw for s in dh.select(["*:SW*"], "L2", NO_CHUNKS)} == {"SW01", "SW02", "SW_ALL"}


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
        dh.select([pattern], "L2", NO_CHUNKS)


def test_unknown_level(dh):
    with pytest.raises(DataHandlerError, match=r"data level 'L3' is not defined \(known: L1, L2, L2_BP\)"):
        dh.select(["2023*"], "L3", NO_CHUNKS)


def test_obs_id_without_date_with_year_template(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH.replace("'20240115_XYZ'", "'calib_XYZ'"))
    with pytest.raises(DataHandlerError, match="does not start with YYYYMMDD"):
        load_data_handler(path).select(["calib*"], "L2", NO_CHUNKS)


def test_relative_template_is_read_against_the_file(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH.replace("'/data/%OBS_ID%/bp'", "'store/%OBS_ID%'"))
    assert paths(load_data_handler(path).select(["20240115_XYZ:SW01"], "L2_BP", NO_CHUNKS)) == [
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
        (DH + "[data_levels.L3]\npath = '/x'\n", r"\[data_levels\] replaces \[data_level_path\]: give one of the two formats"),
        (DH.replace("[data_level_path]", "[levels]"), r"missing section \[data_levels\] \(or the older \[data_level_path\]\)"),
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


# nenucal 0.29's [data_levels] format, N2 obs_ids, subband and LST levels, unused sections
NEW = """
bp_cal_path = 'cal/%OBS_ID%.h5'
cal_obs_id_patterns = ['*CYGA*']
[data_levels.L1]
path = '/net/%NODE%/L1'
[data_levels.L2]
path = '/net/%NODE%/L2/%YEAR%/%MONTH%'
input = 'L1'
parset = 'l1_to_l2.parset'
avg_freq = 4
[data_levels.L2_LST]
path = '/data/lst/%N1_OBS_ID%'
input = 'L2'
lst = {start = 0, end = 24, width = 1, longitude = 6.57}
[data_levels.L3]
path = '/data/l3/%OBS_ID%'
input = 'L2_LST'
[data_levels.RAW]
path = '/net/%NODE%/raw'
subbands = true
[data_levels.L1_SW]
path = '/net/%NODE%/l1sw'
subbands = false
[spectral_windows]
SW01 = [98, 100]
SW02 = [146, 146]
SW_ALL = ['SW01', 'SW02']
[obs_ids]
'20231201_NT04' = ['node101', 'node102']
'20231202_NT04' = ['node103', 'node104']
[n2_obs_ids.20231201_N2]
nodes = 'node[101-102]'
n1_obs_ids = ['20231201_NT04', '20231202_NT04']
[remote_hosts.cep]
host = 'cep.example'
[worker.resources]
heavy = {cpus = 12, mem = '40GB'}
[worker.l1_to_l2]
max_concurrent = 8
"""


@pytest.fixture
def new_dh(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(NEW)
    return load_data_handler(path)


def test_the_data_levels_format_and_its_unused_sections_load(new_dh):
    assert list(new_dh.levels) == ["L1", "L2", "L2_LST", "L3", "RAW", "L1_SW"]
    assert paths(new_dh.select(["20231201_NT04:SW02"], "L2", NO_CHUNKS)) == ["/net/node102/L2/2023/12/20231201_NT04/SW02.MS"]


def test_subband_ms_names_are_not_padded(new_dh):
    assert paths(new_dh.select(["20231201_NT04:SW01"], "L1", NO_CHUNKS)) == [
        f"/net/node101/L1/20231201_NT04/SB{sb}.MS" for sb in (98, 99, 100)
    ]


def test_which_levels_hold_one_ms_per_subband(new_dh):
    # subbands = true makes any level one; subbands = false unmakes an L1-named one
    assert paths(new_dh.select(["20231201_NT04:SW02"], "RAW", NO_CHUNKS)) == ["/net/node102/raw/20231201_NT04/SB146.MS"]
    assert paths(new_dh.select(["20231201_NT04:SW02"], "L1_SW", NO_CHUNKS)) == ["/net/node102/l1sw/20231201_NT04/SW02.MS"]


def test_lst_levels_list_their_bins_on_disk_by_index(new_dh):
    asked = []

    def listing(folder, sw, lst):
        asked.append((folder, sw, lst))
        return [f"{folder}/{sw}_LST120.MS", f"{folder}/{sw}_T002.MS", f"{folder}/{sw}_LST015.MS"]

    # L3 is made MS by MS from an LST level: its MSs are LST bins too
    for level, folder in (("L2_LST", "/data/lst/20231201_NT04"), ("L3", "/data/l3/20231201_NT04")):
        asked.clear()
        got = paths(new_dh.select(["20231201_NT04:SW01"], level, listing))
        assert got == [f"{folder}/SW01_T002.MS", f"{folder}/SW01_LST015.MS", f"{folder}/SW01_LST120.MS"]
        assert asked == [(folder, "SW01", True)]


def test_lst_bins_are_found_on_disk(tmp_path):
    from imgpipe.facts.ms_files import find_chunks

    for name in ("SW01_LST015.MS", "SW01_T001.MS", "SW01.MS", "SW02_T001.MS", "SW01_LST1.MS"):
        (tmp_path / name).mkdir()
    assert find_chunks(str(tmp_path), "SW01", True) == [f"{tmp_path}/SW01_LST015.MS", f"{tmp_path}/SW01_T001.MS"]
    assert find_chunks(str(tmp_path), "SW01", False) == [f"{tmp_path}/SW01_T001.MS"]


def test_an_n2_obs_id_at_a_subband_level_is_its_n1_obs_ids_subbands(new_dh):
    got = paths(new_dh.select(["20231201_N2:SW02"], "L1", NO_CHUNKS))
    assert got == ["/net/node102/L1/20231201_NT04/SB146.MS", "/net/node104/L1/20231202_NT04/SB146.MS"]


def test_an_n2_obs_id_elsewhere_is_its_time_chunks_on_each_node(new_dh):
    def listing(folder, sw, lst):
        node = folder.split("/")[2]
        return {"node101": [f"{folder}/{sw}_T003.MS", f"{folder}/{sw}_T001.MS"], "node102": [f"{folder}/{sw}_T002.MS"]}[node]

    # %YEAR%/%MONTH% from the N2 obs_id itself; chunks of both nodes sorted by index
    assert paths(new_dh.select(["20231201_N2:SW01"], "L2", listing)) == [
        "/net/node101/L2/2023/12/20231201_N2/SW01_T001.MS",
        "/net/node102/L2/2023/12/20231201_N2/SW01_T002.MS",
        "/net/node101/L2/2023/12/20231201_N2/SW01_T003.MS",
    ]


def test_an_n2_directory_shared_by_its_nodes_is_listed_once(new_dh):
    asked = []

    def listing(folder, sw, lst):
        asked.append(folder)
        return [f"{folder}/{sw}_LST010.MS"]

    # %N1_OBS_ID% is the first N1 obs_id; no %NODE%: both nodes share the folder
    assert paths(new_dh.select(["20231201_N2:SW02"], "L2_LST", listing)) == ["/data/lst/20231201_NT04/SW02_LST010.MS"]
    assert asked == ["/data/lst/20231201_NT04"]


def test_patterns_match_n1_then_n2_obs_ids_in_file_order(new_dh):
    sel = new_dh.select(["*"], "L1", NO_CHUNKS)
    assert [(s.obs_id, s.sw) for s in sel][::2] == [("20231201_NT04", "SW01"), ("20231202_NT04", "SW01"), ("20231201_N2", "SW01")]


def test_n2_nodes_as_a_list_keep_their_order(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(NEW.replace("nodes = 'node[101-102]'", "nodes = ['node102', 'node101']"))
    assert load_data_handler(path).n2_obs_ids["20231201_N2"].nodes == ("node102", "node101")


@pytest.mark.parametrize(
    "change, message",
    [
        (("path = '/net/%NODE%/L1'", "path = '/net/%NODE%/L1'\nsubband = true"), r"unknown key 'subband' in \[data_levels.L1\] \(known: path, input, subbands"),
        (("[data_levels.L1]\npath = '/net/%NODE%/L1'", "[data_levels.L1]\ninput = 'L0'"), r"\[data_levels.L1\] needs path"),
        (("input = 'L1'", "input = 'L0'"), r"\[data_levels.L2\] input = 'L0': no such level"),
        (("subbands = true", "subbands = 'yes'"), r"\[data_levels.RAW\] subbands = 'yes': must be true or false"),
        (("n1_obs_ids = ['20231201_NT04', '20231202_NT04']", "n1_obs_ids = ['20231203_NT04']"), r"\[n2_obs_ids.20231201_N2\] n1_obs_ids: '20231203_NT04' is not in \[obs_ids\]"),
        (("nodes = 'node[101-102]'", "nodes = 'node[102-101]'"), r"\[n2_obs_ids.20231201_N2\] nodes: bad range"),
        (("nodes = 'node[101-102]'\n", ""), r"\[n2_obs_ids.20231201_N2\] needs nodes and n1_obs_ids"),
    ],
)
def test_what_imgpipe_reads_stays_strictly_checked(tmp_path, change, message):
    path = tmp_path / "dh.toml"
    assert change[0] in NEW
    path.write_text(NEW.replace(*change))
    with pytest.raises(DataHandlerError, match=message) as err:
        load_data_handler(path)
    assert str(path) in str(err.value)


def test_old_format_with_l1_to_l2_and_lst_binning(tmp_path):
    path = tmp_path / "dh.toml"
    path.write_text(DH.replace("[spectral_windows]", "[l1_to_l2_config.L2]\ndppp_config = 'x.parset'\n"
                               "[lst_binning.L2_BP]\nstart = 0\nend = 24\nwidth = 1\nlongitude = 6.57\n[spectral_windows]"))
    dh = load_data_handler(path)
    assert dh.levels["L2"].input == "L1" and dh.levels["L2_BP"].lst
    got = paths(dh.select(["20240115_XYZ:SW01"], "L2_BP", lambda folder, sw, lst: [f"{folder}/{sw}_LST005.MS"]))
    assert got == ["/data/20240115_XYZ/bp/SW01_LST005.MS"]
