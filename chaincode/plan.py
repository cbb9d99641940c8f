"""The pricing plan of a contract: validation and the parsed, immutable `Plan`.

One pass both validates and builds, so validation and rating can never disagree about what a field means.
`validate_plan` reports every problem at once (a provider fixing a plan wants the whole list), each with a
JSON path such as `charges[1].tiers[0].up_to`. Rules are strict on purpose: a plan is agreed by two parties
and then rated by every peer for years, so anything ambiguous (a bounded last tier, an unknown field that
may be a typo, an amount finer than the currency's minor unit) is refused up front instead of interpreted.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from chaincode.money import EXACT, ZERO, minor_units, parse_plain_decimal
from chaincode.periods import is_timezone, local_midnight, parse_date, zone

MODELS = ("flat", "per_unit", "graduated", "volume", "package", "time_of_use", "dynamic")
AGGREGATIONS = ("sum", "max", "count", "latest")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# UNCL 5305 duty/tax category codes used by EN 16931 / PEPPOL BIS 3.0.
TAX_CATEGORIES = ("S", "Z", "E", "AE", "K", "G", "O", "L", "M", "B")
# Line ids the rater adds itself; a charge may not take them.
RESERVED_CHARGE_IDS = ("minimum_commitment_true_up", "maximum_cap")
MAX_PRICE = Decimal(10) ** 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")

# Keys each model accepts besides "id" and "model" (plus free-text "description"/"name").
_MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "flat": ("amount",),
    "per_unit": ("metric", "unit_price"),
    "graduated": ("metric", "tiers"),
    "volume": ("metric", "tiers"),
    "package": ("metric", "package_size", "package_price"),
    "time_of_use": ("metric", "windows", "default_unit_price"),
    "dynamic": ("metric",),
}
_COMMON_KEYS = ("id", "model", "description", "name")


class PlanError(Exception):
    """The plan is invalid; `errors` lists every problem as {"path", "message"}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid plan: {summary}{more}")


@dataclass(frozen=True)
class Metric:
    aggregation: str
    unit: str = ""


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # cumulative upper bound, inclusive; None = no limit (last tier only)
    unit_price: Decimal


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]  # weekdays, Monday = 0, sorted
    start_minute: int  # "from", minutes after local midnight, inclusive
    end_minute: int  # "to", exclusive; 1440 = "24:00"
    unit_price: Decimal

    def contains(self, weekday: int, microsecond_of_day: int) -> bool:
        us_per_minute = 60_000_000
        return (
            weekday in self.days
            and self.start_minute * us_per_minute <= microsecond_of_day < self.end_minute * us_per_minute
        )


@dataclass(frozen=True)
class Charge:
    id: str
    model: str
    metric: str | None = None
    amount: Decimal | None = None  # flat
    unit_price: Decimal | None = None  # per_unit
    tiers: tuple[Tier, ...] = ()  # graduated, volume
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    windows: tuple[Window, ...] = ()  # time_of_use
    default_unit_price: Decimal | None = None  # time_of_use
    timezone: str | None = None  # time_of_use: the plan's zone, so a window can be found from a charge alone


@dataclass(frozen=True)
class Plan:
    currency: str
    timezone: str
    start: dt.date
    end: dt.date | None
    metrics: dict[str, Metric]
    charges: tuple[Charge, ...]
    minimum_commitment: Decimal | None = None
    maximum: Decimal | None = None
    tax_rate: Decimal | None = None
    tax_category: str | None = None
    # metrics whose readings must carry their own unit_price (referenced by a dynamic charge)
    priced_metrics: tuple[str, ...] = field(default=())

    def requires_unit_price(self, metric: str) -> bool:
        """True when readings of `metric` must carry `unit_price` (a dynamic charge prices it)."""
        return metric in self.priced_metrics

    def charge(self, charge_id: str) -> Charge:
        for c in self.charges:
            if c.id == charge_id:
                return c
        raise KeyError(charge_id)


class _Collector:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def decimal(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = True,
        positive: bool = False,
        max_value: Decimal | None = MAX_PRICE,
        max_fraction_digits: int | None = 12,
    ) -> Decimal | None:
        p = f"{path}.{key}" if path else key
        if key not in obj or obj[key] is None:
            if required:
                self.add(p, "is required")
            return None
        raw = obj[key]
        if isinstance(raw, str) and raw.startswith("-"):
            self.add(p, f"must not be negative, got {raw!r}")
            return None
        try:
            value = parse_plain_decimal(
                raw, max_value=max_value, max_fraction_digits=max_fraction_digits, what=key
            )
        except ValueError as exc:
            self.add(p, str(exc))
            return None
        if positive and value <= ZERO:
            self.add(p, f"must be greater than 0, got {raw!r}")
            return None
        return value


def _money_digits(currency: object) -> int | None:
    try:
        return minor_units(currency)  # type: ignore[arg-type]
    except ValueError:
        return None


def _parse(contract: Mapping[str, Any]) -> tuple[Plan | None, list[dict[str, str]]]:
    c = _Collector()
    if not isinstance(contract, Mapping):
        c.add("", "plan must be a JSON object")
        return None, c.errors

    currency = contract.get("currency")
    digits = _money_digits(currency)
    if digits is None:
        c.add("currency", f"unknown or unsupported ISO 4217 currency {currency!r}")

    timezone = contract.get("timezone")
    if not is_timezone(timezone):
        c.add("timezone", f"unknown IANA timezone {timezone!r}")

    start = end = None
    try:
        start = parse_date(contract.get("start"))
    except ValueError as exc:
        c.add("start", str(exc))
    if contract.get("end") is not None:
        try:
            end = parse_date(contract.get("end"))
        except ValueError as exc:
            c.add("end", str(exc))
    if start is not None and end is not None and end < start:
        c.add("end", f"end {end.isoformat()} is before start {start.isoformat()}")

    metrics = _parse_metrics(contract.get("metrics"), c)
    money_fraction = digits if digits is not None else 12
    charges = _parse_charges(
        contract.get("charges"), metrics, timezone if is_timezone(timezone) else None, money_fraction, c
    )

    minimum = c.decimal(
        contract, "minimum_commitment", "", required=False, max_fraction_digits=money_fraction
    )
    maximum = c.decimal(
        contract, "maximum", "", required=False, max_fraction_digits=money_fraction
    )

    tax_rate = tax_category = None
    tax = contract.get("tax")
    if tax is not None:
        if not isinstance(tax, Mapping):
            c.add("tax", "must be an object {\"rate\", \"category\"} or null")
        else:
            tax_rate = c.decimal(tax, "rate", "tax", max_value=None)
            if tax_rate is not None and tax_rate >= 1:
                c.add("tax.rate", f"must be in [0, 1), got {tax['rate']!r}")
                tax_rate = None
            cat = tax.get("category")
            if cat is not None and cat not in TAX_CATEGORIES:
                c.add("tax.category", f"must be a UNCL 5305 code {list(TAX_CATEGORIES)}, got {cat!r}")
            tax_category = cat if isinstance(cat, str) else None

    if c.errors:
        return None, c.errors
    assert currency is not None and timezone is not None and start is not None and metrics is not None
    priced = tuple(dict.fromkeys(ch.metric for ch in charges if ch.model == "dynamic" and ch.metric))
    plan = Plan(
        currency=currency,
        timezone=timezone,
        start=start,
        end=end,
        metrics=metrics,
        charges=charges,
        minimum_commitment=minimum,
        maximum=maximum,
        tax_rate=tax_rate,
        tax_category=tax_category,
        priced_metrics=priced,
    )
    return plan, []


def _parse_metrics(raw: object, c: _Collector) -> dict[str, Metric] | None:
    if not isinstance(raw, Mapping) or not raw:
        c.add("metrics", "must be a non-empty object of metric name -> {aggregation, unit}")
        return None
    out: dict[str, Metric] = {}
    for name, spec in raw.items():
        path = f"metrics.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            c.add(path, "metric name must be 1-64 characters of letters, digits, '_', '.', ':', '-'")
            continue
        if not isinstance(spec, Mapping):
            c.add(path, "must be an object {aggregation, unit}")
            continue
        agg = spec.get("aggregation")
        if agg not in AGGREGATIONS:
            c.add(f"{path}.aggregation", f"must be one of {list(AGGREGATIONS)}, got {agg!r}")
            continue
        unit = spec.get("unit", "")
        if not isinstance(unit, str):
            c.add(f"{path}.unit", "must be a string")
            continue
        out[name] = Metric(aggregation=agg, unit=unit)
    return out


def _parse_charges(
    raw: object, metrics: dict[str, Metric] | None, timezone: str | None, money_digits: int, c: _Collector
) -> tuple[Charge, ...]:
    """Charges in plan order. A flat amount is money as written, so it may not be finer than the
    currency's minor unit (`money_digits`); prices per unit may (they are multiplied, then rounded)."""
    if not isinstance(raw, list) or not raw:
        c.add("charges", "must be a non-empty list of charges")
        return ()
    seen: dict[str, int] = {}
    out: list[Charge] = []
    for i, spec in enumerate(raw):
        path = f"charges[{i}]"
        if not isinstance(spec, Mapping):
            c.add(path, "must be an object")
            continue
        before = len(c.errors)
        cid = spec.get("id")
        if not isinstance(cid, str) or not _NAME.fullmatch(cid):
            c.add(f"{path}.id", "charge id must be 1-64 characters of letters, digits, '_', '.', ':', '-'")
        elif cid in RESERVED_CHARGE_IDS:
            c.add(f"{path}.id", f"{cid!r} is reserved for the line the rater adds itself")
        elif cid in seen:
            c.add(f"{path}.id", f"duplicate charge id {cid!r} (also charges[{seen[cid]}])")
        else:
            seen[cid] = i
        model = spec.get("model")
        if model not in MODELS:
            c.add(f"{path}.model", f"unknown model {model!r}; one of {list(MODELS)}")
            continue
        for key in spec:
            if key not in _COMMON_KEYS and key not in _MODEL_KEYS[model]:
                c.add(f"{path}.{key}", f"unknown field for model {model!r}")
        metric = None
        if model != "flat":
            metric = spec.get("metric")
            if not isinstance(metric, str):
                c.add(f"{path}.metric", "is required (the name of a declared metric)")
            elif metrics is not None and metric not in metrics:
                c.add(f"{path}.metric", f"metric {metric!r} is not declared in metrics")
        kw: dict[str, Any] = {}
        if model == "flat":
            kw["amount"] = c.decimal(spec, "amount", path, max_fraction_digits=money_digits)
        elif model == "per_unit":
            kw["unit_price"] = c.decimal(spec, "unit_price", path)
        elif model in ("graduated", "volume"):
            kw["tiers"] = _parse_tiers(spec.get("tiers"), f"{path}.tiers", c)
        elif model == "package":
            kw["package_size"] = c.decimal(spec, "package_size", path, positive=True)
            kw["package_price"] = c.decimal(spec, "package_price", path)
        elif model == "time_of_use":
            kw["windows"] = _parse_windows(spec.get("windows"), f"{path}.windows", c)
            kw["default_unit_price"] = c.decimal(spec, "default_unit_price", path)
            kw["timezone"] = timezone
        if len(c.errors) == before:
            out.append(Charge(id=cid, model=model, metric=metric, **kw))  # type: ignore[arg-type]
    return tuple(out)


def _parse_tiers(raw: object, path: str, c: _Collector) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        c.add(path, "must be a non-empty list of {up_to, unit_price}")
        return ()
    tiers: list[Tier] = []
    previous: Decimal | None = None
    for j, spec in enumerate(raw):
        tp = f"{path}[{j}]"
        if not isinstance(spec, Mapping):
            c.add(tp, "must be an object {up_to, unit_price}")
            continue
        for key in spec:
            if key not in ("up_to", "unit_price"):
                c.add(f"{tp}.{key}", "unknown field for a tier")
        price = c.decimal(spec, "unit_price", tp)
        if "up_to" not in spec:
            c.add(f"{tp}.up_to", "is required (null for the last, unbounded tier)")
            continue
        up_to = None
        if spec["up_to"] is None:
            if j != len(raw) - 1:
                c.add(f"{tp}.up_to", "only the last tier may be unbounded (null)")
        else:
            up_to = c.decimal(spec, "up_to", tp, positive=True, max_value=None)
            if up_to is not None and previous is not None and up_to <= previous:
                c.add(f"{tp}.up_to", f"tiers must be strictly increasing: {spec['up_to']} <= {previous}")
            if up_to is not None:
                previous = up_to
            if j == len(raw) - 1:
                c.add(f"{tp}.up_to", "the last tier must be unbounded (up_to null)")
        if price is not None:
            tiers.append(Tier(up_to=up_to, unit_price=price))
    return tuple(tiers)


def _clock(raw: object) -> int | None:
    if not isinstance(raw, str) or not _CLOCK.fullmatch(raw):
        return None
    h, m = raw.split(":")
    return int(h) * 60 + int(m)


def _parse_windows(raw: object, path: str, c: _Collector) -> tuple[Window, ...]:
    if not isinstance(raw, list) or not raw:
        c.add(path, "must be a non-empty list of {days, from, to, unit_price}")
        return ()
    out: list[Window] = []
    for j, spec in enumerate(raw):
        wp = f"{path}[{j}]"
        if not isinstance(spec, Mapping):
            c.add(wp, "must be an object {days, from, to, unit_price}")
            continue
        before = len(c.errors)
        for key in spec:
            if key not in ("days", "from", "to", "unit_price"):
                c.add(f"{wp}.{key}", "unknown field for a window")
        days = spec.get("days")
        day_idx: list[int] = []
        if not isinstance(days, list) or not days:
            c.add(f"{wp}.days", f"must be a non-empty list of {list(DAYS)}")
        else:
            for d in days:
                if d not in DAYS:
                    c.add(f"{wp}.days", f"unknown day {d!r}; one of {list(DAYS)}")
                elif DAYS.index(d) in day_idx:
                    c.add(f"{wp}.days", f"day {d!r} listed twice")
                else:
                    day_idx.append(DAYS.index(d))
        start = _clock(spec.get("from"))
        end = _clock(spec.get("to"))
        if start is None or start == 1440:
            c.add(f"{wp}.from", f"must be a local time HH:MM (00:00-23:59), got {spec.get('from')!r}")
        if end is None:
            c.add(f"{wp}.to", f"must be a local time HH:MM (00:00-24:00), got {spec.get('to')!r}")
        if start is not None and end is not None and start != 1440 and end <= start:
            c.add(f"{wp}.to", "must be after 'from' (a window cannot cross midnight: split it in two)")
        price = c.decimal(spec, "unit_price", wp)
        if len(c.errors) == before and start is not None and end is not None and price is not None:
            days_t = tuple(sorted(day_idx))
            out.append(Window(days=days_t, start_minute=start, end_minute=end, unit_price=price))
    return tuple(out)


def validate_plan(contract: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every problem with the plan part of `contract` as {"path", "message"}; [] when valid."""
    return _parse(contract)[1]


def parse_plan(contract: Mapping[str, Any]) -> Plan:
    """The `Plan` of `contract` (which may carry other contract fields, ignored here); raises PlanError."""
    plan, errors = _parse(contract)
    if plan is None:
        raise PlanError(errors)
    return plan


def contract_bounds(plan: Plan) -> tuple[dt.datetime, dt.datetime | None]:
    """[start, end) of the contract in UTC: local 00:00 of `start` to local 00:00 of the day after `end`."""
    start = local_midnight(plan.start, plan.timezone)
    if plan.end is None:
        return start, None
    return start, local_midnight(plan.end + dt.timedelta(days=1), plan.timezone)


def tou_window(charge: Charge, ts: dt.datetime, timezone: str | None = None) -> int:
    """Index of the first window of a time_of_use charge containing `ts`'s local time; -1 = default price.

    Local time is taken in `timezone`, else the plan zone stored on the charge by `parse_plan`.
    """
    tz_name = timezone or charge.timezone
    if tz_name is None:
        raise ValueError(f"charge {charge.id!r} has no timezone")
    if ts.tzinfo is None:
        raise ValueError("timestamp must be aware")
    local = ts.astimezone(zone(tz_name))
    us = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
    wd = local.weekday()
    for i, w in enumerate(charge.windows):
        if w.contains(wd, us):
            return i
    return -1


def graduated_amount(tiers: Iterable[Tier], quantity: Decimal) -> Decimal:
    """Each unit priced by the tier it falls in (`up_to` cumulative and inclusive)."""
    total = ZERO
    lower = ZERO
    with localcontext(EXACT):
        for tier in tiers:
            upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
            if upper > lower:
                total += (upper - lower) * tier.unit_price
            if tier.up_to is None or quantity <= tier.up_to:
                break
            lower = tier.up_to
    return total


def volume_tier(tiers: Iterable[Tier], quantity: Decimal) -> Tier:
    """The tier the total quantity reaches: the first whose `up_to` is >= quantity (or the unbounded one)."""
    last = None
    for tier in tiers:
        last = tier
        if tier.up_to is None or quantity <= tier.up_to:
            return tier
    if last is None:
        raise ValueError("no tiers")
    return last


def package_count(quantity: Decimal, size: Decimal) -> int:
    """ceil(quantity / size), exactly (integer arithmetic on the decimals' exact ratios)."""
    qn, qd = quantity.as_integer_ratio()
    sn, sd = size.as_integer_ratio()
    if sn <= 0:
        raise ValueError("package_size must be positive")
    return -((-qn * sd) // (qd * sn))
