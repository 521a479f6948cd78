"""Which columns an MS has, read from its table description without casacore."""

from imgpipe.facts.ms_columns import columns_among


def test_the_columns_of_real_telescope_mss_are_read_as_casacore_lists_them(shared_ms, ms_copy):
    from casacore import tables

    names = ("DATA", "CORRECTED_DATA", "MODEL_DATA", "WEIGHT_SPECTRUM", "FLOAT_DATA")
    mss = [shared_ms("vla_J1008+0730_64ch.ms"), shared_ms("lwasv_4ant_4ch.ms"), *ms_copy("SW01.MS")]
    for ms in mss:
        with tables.table(str(ms), ack=False) as t:
            expected = frozenset(names) & set(t.colnames())
        assert columns_among(str(ms), names) == expected and expected


def test_a_folder_that_is_not_a_casacore_table_is_not_judged(tmp_path):
    assert columns_among(str(tmp_path / "missing.MS"), ("DATA",)) is None
    (tmp_path / "x.MS").mkdir()
    (tmp_path / "x.MS" / "table.dat").write_text("DATA")
    assert columns_among(str(tmp_path / "x.MS"), ("DATA",)) is None
