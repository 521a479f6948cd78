"""Grouping rules: one job per MS, --combine, --combine_obs_ids."""

from imgpipe.core.data_handler import ResolvedMS, Selection
from imgpipe.core.grouping import group_paths, group_selections


def ms(obs, sw, n=1):
    return tuple(ResolvedMS(f"/d/{obs}/{sw}_{i}.MS", obs, sw) for i in range(n))


SELECTIONS = [
    Selection("obsA", "SW01", ms("obsA", "SW01", 2)),
    Selection("obsA", "SW02", ms("obsA", "SW02")),
    Selection("obsB", "SW01", ms("obsB", "SW01")),
    Selection("obsB", "SW02", ms("obsB", "SW02", 2)),
    Selection("obsC", "SW02", ms("obsC", "SW02")),
]
ORDER = ("SW01", "SW02", "SW_ALL")


def test_paths_one_job_each_or_all_together():
    paths = [ResolvedMS("/a.MS"), ResolvedMS("/b.MS")]
    assert [g.ms for g in group_paths(paths, combine=False)] == [(paths[0],), (paths[1],)]
    (group,) = group_paths(paths, combine=True)
    assert group.ms == tuple(paths) and group.obs_id is None and group.sw is None
    assert group_paths([], combine=True) == []


def test_data_handler_one_job_per_ms():
    groups = group_selections(SELECTIONS, False, False, ORDER)
    assert len(groups) == 7
    assert all(len(g.ms) == 1 and g.ms[0].obs_id == g.obs_id and g.ms[0].sw == g.sw for g in groups)


def test_combine_one_job_per_sw_and_obs_id():
    groups = group_selections(SELECTIONS, True, False, ORDER)
    assert [(g.obs_id, g.sw, len(g.ms)) for g in groups] == [
        ("obsA", "SW01", 2), ("obsA", "SW02", 1), ("obsB", "SW01", 1), ("obsB", "SW02", 2), ("obsC", "SW02", 1)
    ]


def test_combine_obs_ids_one_job_per_sw_in_file_order():
    # obsC has only SW02 and comes first here: the SW order still follows the file
    groups = group_selections([SELECTIONS[4], *SELECTIONS[:4]], True, True, ORDER)
    assert [g.sw for g in groups] == ["SW01", "SW02"]
    assert [m.obs_id for m in groups[1].ms] == ["obsC", "obsA", "obsB", "obsB"]
    assert groups[0].obs_id is None  # spans obsA and obsB
    single = group_selections(SELECTIONS[:2], True, True, ORDER)
    assert [g.obs_id for g in single] == ["obsA", "obsA"]


def test_the_grouping_in_words_and_flags():
    from imgpipe.core.grouping import describe

    assert describe(False, False, False) == describe(True, False, True) == "one job per MS"
    assert describe(False, True, False) == "-c: every MS in one job"
    assert describe(True, True, False) == "-c: one job per spectral window and obs_id"
    assert describe(True, True, True) == "-c -o: one job per spectral window over all obs_ids"
