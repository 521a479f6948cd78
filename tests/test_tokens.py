import pytest

from imgpipe.core.errors import ConfigError
from imgpipe.core.tokens import check_tokens, expand_tokens, token_values


def test_values_come_from_the_last_ms():
    values = token_values("/net/node1/obs/SW03_T001.MS/", "img", "20231201", "SW03")
    assert values == {"ms_in": "/net/node1/obs/SW03_T001.MS", "ms_basename": "SW03_T001.MS", "name": "img", "obs_id": "20231201", "sw": "SW03"}
    assert expand_tokens("$ms_in$/images/$name$_$sw$", values) == "/net/node1/obs/SW03_T001.MS/images/img_SW03"


def test_check_tokens():
    check_tokens("$ms_basename$/$obs_id$", "out-dir", True, "c.toml")
    with pytest.raises(ConfigError, match=r"unknown token \$MS_IN\$"):
        check_tokens("$MS_IN$", "out-dir", True, "c.toml")
    with pytest.raises(ConfigError, match=r"\$sw\$ needs a \[data_handler\]"):
        check_tokens("x/$sw$", "out-dir", False, "c.toml")


def test_obs_id_of_a_job_is_its_own_or_a_range_over_several():
    from imgpipe.core.tokens import obs_id_of

    assert obs_id_of(["20231201_NT04", "20231201_NT04"]) == "20231201_NT04"
    assert obs_id_of(["20231201_NT04", "20231202_NT04", "20231203_NT04"]) == "20231201_NT04-20231203_NT04"
    assert obs_id_of([None, None]) is None
