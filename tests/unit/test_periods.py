"""Periods: RFC 3339 parsing, zones from bundled tzdata, month bounds around DST and month ends."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode.periods import (
    UnknownTimezone,
    format_timestamp,
    is_timezone,
    local_midnight,
    next_period,
    parse_period,
    previous_period,
    zone,
)
from chaincode.plan import parse_plan
from chaincode.rating import contract_bounds, parse_timestamp, period_bounds, period_of
from tests.helpers.rating import contract

pytestmark = pytest.mark.unit
UTC = dt.UTC
US = dt.timedelta(microseconds=1)
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham", "UTC"]
# zones whose clocks jump at local midnight (Asuncion: 2017-10-01 00:00 -> 01:00, on the 1st)
MIDNIGHT_ZONES = ["America/Asuncion", "America/Santiago", "America/Havana", "Asia/Beirut"]


# --- parse_timestamp ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-03T09:15:00+01:00", "2026-11-03T08:15:00Z"),
        ("2026-11-03T08:15:00Z", "2026-11-03T08:15:00Z"),
        ("2026-11-03t08:15:00z", "2026-11-03T08:15:00Z"),
        ("2026-11-03T13:45:00+05:30", "2026-11-03T08:15:00Z"),
        ("2026-11-03T08:15:00-00:00", "2026-11-03T08:15:00Z"),
        ("2026-11-02T22:15:00-10:00", "2026-11-03T08:15:00Z"),
        ("2026-11-03T08:15:00.5Z", "2026-11-03T08:15:00.500000Z"),
        ("2026-11-03T08:15:00.123456789Z", "2026-11-03T08:15:00.123456Z"),  # truncated, not rounded
        ("2026-11-03T08:15:00.999999999Z", "2026-11-03T08:15:00.999999Z"),
        ("2028-02-29T00:00:00Z", "2028-02-29T00:00:00Z"),
    ],
)
def test_parse_timestamp(text: str, utc: str) -> None:
    ts = parse_timestamp(text)
    assert ts.tzinfo is not None
    assert format_timestamp(ts) == utc


@pytest.mark.parametrize(
    "bad",
    ["2026-11-03T09:15:00", "2026-11-03 09:15:00Z", "2026-11-03", "2026-02-30T00:00:00Z",
     "2026-11-03T24:00:00Z", "2026-12-31T23:59:60Z", "2026-11-03T09:15:00+24:00", "2026-11-03T09:15:00+01:60",
     "2026-11-03T09:15:00+0100", "2026-11-03T09:15Z", "2026-11-03T09:15:00.Z",
     "2026-11-03T09:15:00.1234567890Z", "1899-12-31T23:59:59Z",
     "9999-12-31T00:00:00Z", "2026-11-03T09:15:00+01:00 ", "２０２６-11-03T09:15:00Z", 1730000000, None, ""],
)  # fmt: skip
def test_parse_timestamp_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(bad)


# --- zones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*ZONES, "America/Los_Angeles", "Etc/GMT+5"])
def test_known_zones(name: str) -> None:
    assert is_timezone(name)
    assert zone(name).key == name


@pytest.mark.parametrize(
    "bad",
    ["Europe/Atlantis", "localtime", "Factory", "/etc/localtime", "../zoneinfo/UTC", "europe/berlin", "",
     None],
)
def test_unknown_zones(bad: object) -> None:
    assert not is_timezone(bad)
    with pytest.raises(UnknownTimezone):
        zone(bad)  # type: ignore[arg-type]


# --- periods: examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "tz", "period"),
    [
        ("2026-10-31T22:59:59Z", "Europe/Berlin", "2026-10"),  # 23:59:59 CET (DST ended 25 Oct)
        ("2026-10-31T23:00:00Z", "Europe/Berlin", "2026-11"),
        ("2026-03-31T21:59:59Z", "Europe/Berlin", "2026-03"),  # 23:59:59 CEST (DST began 29 Mar)
        ("2026-03-31T22:00:00Z", "Europe/Berlin", "2026-04"),
        ("2026-11-01T03:59:59Z", "America/New_York", "2026-10"),  # 23:59:59 EDT
        ("2026-11-01T04:00:00Z", "America/New_York", "2026-11"),
        ("2026-12-01T04:59:59Z", "America/New_York", "2026-11"),  # EST from 1 Nov
        ("2026-11-30T18:29:59Z", "Asia/Kolkata", "2026-11"),
        ("2026-11-30T18:30:00Z", "Asia/Kolkata", "2026-12"),
        ("2026-11-30T10:14:59Z", "Pacific/Chatham", "2026-11"),  # +13:45 in summer
        ("2026-11-30T10:15:00Z", "Pacific/Chatham", "2026-12"),
        ("2026-11-30T12:59:59Z", "Australia/Lord_Howe", "2026-11"),  # +11:00 in summer
        ("2026-11-30T13:00:00Z", "Australia/Lord_Howe", "2026-12"),
        ("2026-06-30T13:29:59Z", "Australia/Lord_Howe", "2026-06"),  # +10:30 in winter
        ("2026-06-30T13:30:00Z", "Australia/Lord_Howe", "2026-07"),
        ("2026-12-31T23:59:59.999999Z", "UTC", "2026-12"),
        ("2027-01-01T00:00:00Z", "UTC", "2027-01"),
        ("2027-01-01T00:30:00+01:00", "UTC", "2026-12"),  # the zone decides, not the offset sent
    ],
)
def test_period_of(ts: str, tz: str, period: str) -> None:
    assert period_of(parse_timestamp(ts), tz) == period


def test_period_bounds_example_berlin() -> None:
    assert period_bounds("2026-03", "Europe/Berlin") == (
        dt.datetime(2026, 2, 28, 23, tzinfo=UTC),
        dt.datetime(2026, 3, 31, 22, tzinfo=UTC),  # 31 days minus the hour DST took
    )
    start, end = period_bounds("2026-11", "Europe/Berlin")
    assert start == dt.datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert end == dt.datetime(2026, 11, 30, 23, tzinfo=UTC)
    assert start.tzinfo is UTC


def test_midnight_in_a_dst_gap_on_the_first() -> None:
    """Asuncion, 1 Oct 2017: 00:00 did not exist (00:00 -> 01:00); the period starts at the jump."""
    start, _ = period_bounds("2017-10", "America/Asuncion")
    tz = zone("America/Asuncion")
    assert start.astimezone(tz).replace(tzinfo=None) == dt.datetime(2017, 10, 1, 1, 0)
    assert (start - US).astimezone(tz).replace(tzinfo=None) == dt.datetime(2017, 9, 30, 23, 59, 59, 999999)
    assert period_of(start, "America/Asuncion") == "2017-10"
    assert period_of(start - US, "America/Asuncion") == "2017-09"
    assert period_bounds("2017-09", "America/Asuncion")[1] == start


@pytest.mark.parametrize(
    "bad", ["2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", "1899-12", "9999-12", "", 202601]
)
def test_bad_periods(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_period(bad)
    with pytest.raises(ValueError):
        period_bounds(bad, "UTC")  # type: ignore[arg-type]


def test_next_and_previous_period() -> None:
    assert next_period("2026-12") == "2027-01"
    assert previous_period("2027-01") == "2026-12"
    assert next_period("2026-03") == "2026-04"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        period_of(dt.datetime(2026, 11, 1), "UTC")
    with pytest.raises(ValueError):
        format_timestamp(dt.datetime(2026, 11, 1))


def test_contract_bounds() -> None:
    plan = parse_plan(contract(start="2026-03-01", end="2026-03-29", timezone="Europe/Berlin"))
    start, end = contract_bounds(plan)
    assert start == dt.datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert end == dt.datetime(2026, 3, 29, 22, tzinfo=UTC)  # 00:00 CEST on 30 March, after the DST change
    open_ended = parse_plan(contract(start="2026-11-01", end=None))
    assert contract_bounds(open_ended) == (dt.datetime(2026, 10, 31, 23, tzinfo=UTC), None)


# --- periods: properties --------------------------------------------------------------------------------

periods = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(1971, 2040), st.integers(1, 12))


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(ZONES + MIDNIGHT_ZONES), period=periods, frac=st.fractions(0, 1))
def test_bounds_partition_the_time_line(tz: str, period: str, frac: object) -> None:
    start, end = period_bounds(period, tz)
    assert start.tzinfo is UTC and end.tzinfo is UTC and start < end
    assert period_bounds(next_period(period), tz)[0] == end
    assert period_of(start, tz) == period
    assert period_of(end - US, tz) == period
    assert period_of(start - US, tz) == previous_period(period)
    assert period_of(end, tz) == next_period(period)
    us = int((end - start) / US * frac)  # type: ignore[operator]
    inside = start + dt.timedelta(microseconds=min(us, int((end - start) / US) - 1))
    assert period_of(inside, tz) == period
    # in the zone, the period is the local calendar month
    local = inside.astimezone(zone(tz))
    assert f"{local.year:04d}-{local.month:02d}" == period


@settings(max_examples=100, deadline=None)
@given(tz=st.sampled_from(ZONES), period=periods)
def test_bounds_are_local_midnight_on_the_first(tz: str, period: str) -> None:
    """In the zones we bill in, midnight always exists, so the bound is exactly 00:00 local."""
    start, _ = period_bounds(period, tz)
    local = start.astimezone(zone(tz))
    assert (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0)
    assert f"{local.year:04d}-{local.month:02d}" == period


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(ZONES + MIDNIGHT_ZONES), day=st.dates(dt.date(1980, 1, 1), dt.date(2035, 12, 31)))
def test_local_midnight_is_the_first_instant_of_the_local_day(tz: str, day: dt.date) -> None:
    t = local_midnight(day, tz)
    z = zone(tz)
    midnight = dt.datetime(day.year, day.month, day.day)
    assert t.astimezone(z).replace(tzinfo=None) >= midnight
    assert (t - US).astimezone(z).replace(tzinfo=None) < midnight


@settings(max_examples=150, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    instant=st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2035, 12, 31), timezones=st.just(UTC)),
)
def test_period_of_any_instant_is_its_local_month(tz: str, instant: dt.datetime) -> None:
    p = period_of(instant, tz)
    start, end = period_bounds(p, tz)
    assert start <= instant < end
    local = instant.astimezone(zone(tz))
    assert p == f"{local.year:04d}-{local.month:02d}"


def test_dst_transition_hours_stay_in_their_month() -> None:
    """Every minute of the DST change days (repeated and skipped hours) maps to the right month."""
    for tz, day in [("Europe/Berlin", "2026-10-25"), ("Europe/Berlin", "2026-03-29"),
                    ("America/New_York", "2026-11-01"), ("America/New_York", "2026-03-08"),
                    ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
                    ("Pacific/Chatham", "2026-04-05"), ("Pacific/Chatham", "2026-09-27")]:  # fmt: skip
        base = parse_timestamp(f"{day}T00:00:00Z") - dt.timedelta(hours=16)
        for minute in range(0, 48 * 60, 7):
            t = base + dt.timedelta(minutes=minute)
            local = t.astimezone(zone(tz))
            assert period_of(t, tz) == f"{local.year:04d}-{local.month:02d}", (tz, t)
