"""Time: RFC 3339 timestamps, IANA timezones, billing periods (calendar months in the contract's zone).

Determinism: every peer must put a reading in the same period, so zones are loaded from the `tzdata`
package shipped with the chaincode (pinned in pyproject), never from the host's /usr/share/zoneinfo, whose
version differs from machine to machine (and which may hold host-specific names such as "localtime").

Periods are defined by their bounds, and `period_of` is derived from those same bounds, so the periods of
one zone partition the time line by construction: `period_bounds(p)[1] == period_bounds(next(p))[0]`, and
an instant belongs to the one period whose half-open interval contains it. A bound is the first instant at
which the zone's wall clock reads 00:00 (or later) on the 1st; when midnight falls in a DST gap that is
the transition instant itself, when it is repeated it is the first occurrence. DST is therefore handled by
construction, not by special case.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
from functools import lru_cache
from zoneinfo import ZoneInfo

UTC = dt.UTC

_RFC3339 = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PERIOD = re.compile(r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})")


# Supported years: wide enough for any bill, narrow enough that the neighbouring months of every period
# (needed to compute its bounds) are representable.
MIN_YEAR = 1900
MAX_YEAR = 9998


class UnknownTimezone(ValueError):
    """Not an IANA zone name known to the bundled tzdata."""


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    # "Factory" is tzdata's placeholder zone ("-00"), not a place anyone bills in.
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and line.strip() != "Factory")


def is_timezone(name: object) -> bool:
    """True when `name` is an IANA zone of the bundled tzdata (e.g. "Europe/Berlin", "UTC")."""
    return isinstance(name, str) and name in _zone_names()


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The `ZoneInfo` for `name`, read from the bundled tzdata package (not the host's zone files)."""
    if not is_timezone(name):
        raise UnknownTimezone(f"unknown IANA timezone {name!r}")
    parts = name.split("/")
    resource = importlib.resources.files("tzdata").joinpath("zoneinfo", *parts)
    with resource.open("rb") as fh:
        return ZoneInfo.from_file(fh, key=name)


def parse_timestamp(text: object) -> dt.datetime:
    """Parse RFC 3339 `date-time` with a mandatory offset ("Z" or "+01:00").

    Fractions of a second beyond microseconds (up to 9 digits) are accepted and truncated: the instant can
    only move towards the start of its own second, never into another period. Leap seconds (":60") cannot
    be represented and are refused. "-00:00" is read as UTC.
    """
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"timestamp must be RFC 3339 with an offset (2026-11-03T09:15:00+01:00): {text!r}")
    # Fast path (one per reading, so it matters): the common shape, already checked by the pattern, in
    # range, without a fraction and with an offset in range, is exactly what the C parser reads the same
    # way; anything else (and anything it refuses) takes the explicit path below with its messages.
    in_range = m["z"] or (m["oh"] <= "23" and m["om"] <= "59")
    if m["frac"] is None and in_range and MIN_YEAR <= int(text[:4]) <= MAX_YEAR:
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    return _parse_match(text, m)


def _parse_match(text: str, m: re.Match[str]) -> dt.datetime:
    try:
        day = dt.date.fromisoformat(m["date"])
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise ValueError(f"year outside {MIN_YEAR}..{MAX_YEAR}")
        frac = (m["frac"] or "").ljust(6, "0")[:6]
        if m["z"]:
            tz: dt.tzinfo = UTC
        else:
            oh, om = int(m["oh"]), int(m["om"])
            if oh > 23 or om > 59:
                raise ValueError("offset out of range")
            delta = dt.timedelta(hours=oh, minutes=om)
            tz = dt.timezone(-delta if m["sign"] == "-" else delta)
        return dt.datetime(
            day.year, day.month, day.day, int(m["h"]), int(m["m"]), int(m["s"]), int(frac), tzinfo=tz
        )
    except ValueError as exc:
        raise ValueError(f"invalid timestamp {text!r}: {exc}") from None


def format_timestamp(ts: dt.datetime) -> str:
    """Canonical UTC form of an instant: "2026-11-03T08:15:00Z" (".ffffff" only when non-zero)."""
    _require_aware(ts)
    u = ts.astimezone(UTC)
    base = u.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{u.microsecond:06d}Z" if u.microsecond else base + "Z"


def parse_date(text: object) -> dt.date:
    """A calendar date "YYYY-MM-DD"."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise ValueError(f"date must be YYYY-MM-DD, got {text!r}")
    day = dt.date.fromisoformat(text)
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"year outside {MIN_YEAR}..{MAX_YEAR}: {text!r}")
    return day


def parse_period(period: object) -> tuple[int, int]:
    """"YYYY-MM" -> (year, month); ValueError otherwise."""
    if not isinstance(period, str):
        raise ValueError("period must be a string YYYY-MM")
    m = _PERIOD.fullmatch(period)
    if m is None or not 1 <= int(m["m"]) <= 12 or not MIN_YEAR <= int(m["y"]) <= MAX_YEAR:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return int(m["y"]), int(m["m"])


def _require_aware(ts: dt.datetime) -> None:
    if not isinstance(ts, dt.datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("timestamp must be an aware datetime")


def _wall(t: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return t.astimezone(tz).replace(tzinfo=None, fold=0)


@lru_cache(maxsize=4096)
def local_midnight(day: dt.date, timezone: str) -> dt.datetime:
    """The first instant (aware, UTC) at which the zone's wall clock reads `day` 00:00 or later.

    Normal days: midnight itself. Midnight in a DST gap: the transition instant (the clock jumps past
    00:00). Midnight repeated by a fall-back: its first occurrence.
    """
    tz = zone(timezone)
    naive = dt.datetime(day.year, day.month, day.day)
    cands = sorted(naive.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))
    first = cands[0]
    one = dt.timedelta(microseconds=1)
    if _wall(first, tz) == naive and _wall(first - one, tz) < naive:
        return first
    # Midnight does not exist (or is odd): find the first whole second whose wall time reaches it.
    # Zone transitions happen on whole seconds, so a search over seconds is exact. Offsets are within
    # +-26 h, so the wall clock is before `naive` 2 days earlier and after it 2 days later.
    lo = int((first - dt.timedelta(days=2)).timestamp())
    hi = int((cands[-1] + dt.timedelta(days=2)).timestamp())
    while hi - lo > 1:  # invariant: wall(lo) < naive <= wall(hi)
        mid = (lo + hi) // 2
        if _wall(dt.datetime.fromtimestamp(mid, UTC), tz) >= naive:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, UTC)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _prev_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


@lru_cache(maxsize=4096)
def period_bounds(period: str, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a billing period as aware UTC datetimes: local 00:00 on the 1st to the next 1st."""
    year, month = parse_period(period)
    ny, nm = _next_month(year, month)
    return local_midnight(dt.date(year, month, 1), timezone), local_midnight(dt.date(ny, nm, 1), timezone)


def period_of(ts: dt.datetime, timezone: str) -> str:
    """The period ("YYYY-MM") whose `period_bounds` contain `ts`: the local calendar month of `ts`.

    Computed from the bounds themselves so that the two can never disagree, even in a zone whose clock
    falls back across midnight on the 1st.
    """
    _require_aware(ts)
    local = ts.astimezone(zone(timezone))
    ym = (local.year, local.month)
    for _ in range(3):
        start, end = period_bounds(f"{ym[0]:04d}-{ym[1]:02d}", timezone)
        if ts < start:
            ym = _prev_month(*ym)
        elif ts >= end:
            ym = _next_month(*ym)
        else:
            return f"{ym[0]:04d}-{ym[1]:02d}"
    raise ValueError(f"cannot place {ts.isoformat()} in a period of {timezone}")  # pragma: no cover


def next_period(period: str) -> str:
    """The period after `period`."""
    y, m = _next_month(*parse_period(period))
    return f"{y:04d}-{m:02d}"


def previous_period(period: str) -> str:
    """The period before `period`."""
    y, m = _prev_month(*parse_period(period))
    return f"{y:04d}-{m:02d}"
