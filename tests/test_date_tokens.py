"""{yesterday}/{today} in patterns: the run's scheduled date, in the schedule's time zone."""

from datetime import datetime, timezone

import pytest

from imgpipe.core.date_tokens import expand_date_tokens
from imgpipe.core.errors import InputError

RUN = datetime(2023, 12, 2, 7, 0, tzinfo=timezone.utc)  # the 08:00 Paris run after the night of Dec 1


def test_tokens_and_formats():
    assert expand_date_tokens("{yesterday}_NT04*", RUN) == "20231201_NT04*"
    assert expand_date_tokens("{today}*:SW0[12]", RUN) == "20231202*:SW0[12]"
    assert expand_date_tokens("obs_{yesterday:%Y-%m-%d}_*", RUN) == "obs_2023-12-01_*"
    assert expand_date_tokens("2023120*", RUN) == "2023120*"  # no token: unchanged


def test_the_date_is_taken_in_the_time_zone():
    late = datetime(2023, 12, 1, 23, 30, tzinfo=timezone.utc)
    assert expand_date_tokens("{today}", late, "UTC") == "20231201"
    assert expand_date_tokens("{today}", late, "Europe/Paris") == "20231202"  # already Dec 2 there
    assert expand_date_tokens("{yesterday}", datetime(2024, 3, 1, 12, tzinfo=timezone.utc)) == "20240229"


@pytest.mark.parametrize("pattern, tz, message", [
    ("{tomorrow}_x", "UTC", r"unknown date token \{tomorrow\}"),
    ("{yesterday", "UTC", r"cannot read the date token"),
    ("{today}", "Mars/Olympus", r"unknown time zone 'Mars/Olympus'"),
])
def test_bad_tokens(pattern, tz, message):
    with pytest.raises(InputError, match=message):
        expand_date_tokens(pattern, RUN, tz)


def test_the_night_of_a_run_is_its_first_date_token():
    from datetime import datetime, timezone

    from imgpipe.core.date_tokens import night_of

    when = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
    assert night_of(["{yesterday}_NT04*"], when) == "20261206"
    assert night_of(["x.MS", "{yesterday:%Y-%m-%d}_*", "{today}_*"], when) == "2026-12-06"
    assert night_of(["20261206_*"], when) is None
