"""The scheduler's due periods end where the chaincode's periods end (`chaincode.periods`, DST-safe).

America/Asuncion moved its clocks from 00:00 to 01:00 on 2023-10-01: September ended at 04:00Z (the
zone's first instant of October 1st). The grace is elapsed time, so with two hours September is due at
06:00Z, not an hour earlier (the naive `datetime(2023, 10, 1, tzinfo=zone) + grace` adds wall time across
the jump and said 05:00Z).
"""

from __future__ import annotations

import datetime as dt

from chaincode.periods import period_bounds
from hub.scheduler import ended_periods

UTC = dt.UTC
SECOND = dt.timedelta(seconds=1)
GRACE = dt.timedelta(hours=2)
ZONE = "America/Asuncion"


def test_a_month_ending_at_a_dst_jump_is_due_after_the_full_grace() -> None:
    end = period_bounds("2023-09", ZONE)[1]
    assert end == dt.datetime(2023, 10, 1, 4, tzinfo=UTC)
    assert ended_periods("2023-09-01", None, ZONE, dt.datetime(2023, 10, 1, 5, 30, tzinfo=UTC), GRACE) == []
    assert ended_periods("2023-09-01", None, ZONE, end + GRACE - SECOND, GRACE) == []
    assert ended_periods("2023-09-01", None, ZONE, end + GRACE, GRACE) == ["2023-09"]


def test_a_contract_ending_before_a_dst_jump_closes_its_last_period_after_the_full_grace() -> None:
    end = period_bounds("2023-09", ZONE)[1]
    assert ended_periods("2023-08-01", "2023-09-30", ZONE, end + GRACE - SECOND, GRACE) == ["2023-08"]
    assert ended_periods("2023-08-01", "2023-09-30", ZONE, end + GRACE, GRACE) == ["2023-08", "2023-09"]
    # nothing after the contract's last period, however late
    later = dt.datetime(2024, 6, 1, tzinfo=UTC)
    assert ended_periods("2023-08-01", "2023-09-30", ZONE, later, GRACE) == ["2023-08", "2023-09"]


def test_every_due_period_matches_the_chaincode_bounds_across_european_dst_months() -> None:
    # Europe/Berlin: summer time from 2026-03-29, winter time from 2026-10-25
    for period, end_utc in (("2026-03", dt.datetime(2026, 3, 31, 22, tzinfo=UTC)),
                            ("2026-10", dt.datetime(2026, 10, 31, 23, tzinfo=UTC))):
        assert period_bounds(period, "Europe/Berlin")[1] == end_utc
        assert ended_periods(f"{period}-01", None, "Europe/Berlin", end_utc - SECOND, dt.timedelta(0)) == []
        assert ended_periods(f"{period}-01", None, "Europe/Berlin", end_utc, dt.timedelta(0)) == [period]
