"""The records of a proof bundle against the transactions that wrote them, and the invoice recomputed.

Runs after `hub.audit.verify` checked the chain and the signatures: each record the bundle shows must be
byte-for-byte (or field-for-field) what a transaction of the bundle wrote; the readings must be exactly
those the closing transaction merged (its range read over the period's usage batches names every
recording transaction, with versions); each reading must be in its device-signed message; and rating those
readings with the agreed plan must give the invoice's lines, totals, reading count and digest.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from chaincode import keys, rating
from chaincode.errors import ChaincodeError
from chaincode.model import canonical
from chaincode.signature import verify_message
from chaincode.stub import partial_key_range, split_composite_key
from hub.audit import amended_evidence, late_evidence
from hub.audit.disclosure import foreign_data
from hub.audit.late_evidence import is_late, line_key, own_period
from hub.audit.report import VerificationReport, short
from hub.audit.verify import Context, VerifiedTx

FUTURE_TOLERANCE = dt.timedelta(minutes=5)  # as chaincode.tx.usage

MONEY_FIELDS = (
    "id",
    "type",
    "contract_id",
    "period",
    "currency",
    "lines",
    "subtotal",
    "tax",
    "total",
    "tax_rate",
    "tax_category",
    "readings",
    "readings_digest",
    "provider",
    "customer",
)
READING_FIELDS = ("metric", "quantity", "timestamp", "unit_price")
CONTRACT_ACCEPTANCE = {"status", "accepted_tx", "accepted_at"}


class Malformed(Exception):
    pass


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} must be a JSON object")
    return value


def _written(ctx: Context, tx_id: Any, key: str) -> tuple[VerifiedTx | None, Any]:
    tx = ctx.txs.get(tx_id) if isinstance(tx_id, str) else None
    if tx is None or tx.writes.get(key) is None:
        return tx, None
    try:
        return tx, json.loads(tx.writes[key])
    except ValueError:
        return tx, None  # not a record this contract writes: reported as "not written" by the caller


def check_evidence(bundle: Mapping[str, Any], ctx: Context) -> None:
    report = ctx.report
    try:
        invoice = _obj(bundle.get("invoice"), "invoice")
        contract = _obj(bundle.get("contract"), "contract")
        assets = [_obj(a, "asset") for a in bundle.get("assets") or []]
        messages = [_obj(m, "message entry") for m in bundle.get("messages") or []]
        readings = [_obj(r, "reading") for r in bundle.get("readings") or []]
        for m in messages:
            _obj(m.get("message"), "message")
            from hub.audit.verify import unexpected

            unexpected(report, f"message {m['message'].get('message_id')}", "message entry", m)
    except Malformed as exc:
        report.fail("bundle", "format", str(exc))
        return
    agreed = _contract(contract, ctx)
    plan_source = agreed or contract
    _disclosure(plan_source, ctx)
    pubkeys = _assets(plan_source, assets, ctx)
    _invoice(invoice, plan_source, ctx)
    _readings(invoice, plan_source, readings, messages, ctx)
    _messages(messages, readings, pubkeys, ctx)
    _, at_close = _written(ctx, invoice.get("tx_id"), keys.contract(str(plan_source.get("id"))))
    rated_with, problem = amended_evidence.at_close(plan_source, at_close)  # plan versions (ADR 0046)
    if problem:
        report.fail("contract", "versions", problem)
    _recompute(invoice, rated_with, readings, report)


def _contract(contract: dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    """The contract as both parties agreed it: the value the accepting transaction wrote."""
    report = ctx.report
    cid = str(contract.get("id"))
    key = keys.contract(cid)
    acc, agreed = _written(ctx, contract.get("accepted_tx"), key)
    if acc is None:
        report.fail("contract", "missing_tx", "the transaction that accepted it is not in the bundle")
        return None
    if agreed is None or acc.fn != "AcceptContract":
        report.fail("contract", "not_written", f"tx {short(acc.tx_id)} did not accept contract {cid}")
        return None
    report.count("contract")
    for f in sorted(set(agreed) | set(contract)):
        if agreed.get(f) != contract.get(f):
            report.fail(
                "contract", "differs", f"{f} differs from the contract accepted in tx {short(acc.tx_id)}"
            )
    if agreed.get("status") != "ACTIVE":
        report.fail("contract", "status", f"tx {short(acc.tx_id)} left it {agreed.get('status')}, not ACTIVE")
    parties = {agreed.get("provider"), agreed.get("customer")}
    if len(parties) != 2:
        report.fail("contract", "parties", "provider and customer must be two different orgs")
    if not parties <= acc.endorsers:
        report.fail(
            "contract",
            "policy",
            f"acceptance tx {short(acc.tx_id)} is not endorsed by both {sorted(map(str, parties))}",
        )
    if acc.creator != agreed.get("customer"):
        report.fail("contract", "creator", f"accepted by {acc.creator}, not the customer")
    prop, proposed = _written(ctx, contract.get("proposed_tx"), key)
    if prop is None or proposed is None or prop.fn != "ProposeContract":
        report.fail("contract", "missing_tx", "the transaction that proposed it is not in the bundle")
    else:
        for f in sorted((set(agreed) | set(proposed)) - CONTRACT_ACCEPTANCE):
            if agreed.get(f) != proposed.get(f):
                report.fail(
                    "contract", "differs", f"accepted {f} differs from the proposal in tx {short(prop.tx_id)}"
                )
        if prop.creator != agreed.get("provider"):
            report.fail("contract", "creator", f"proposed by {prop.creator}, not the provider")
    return agreed


def _disclosure(contract: Mapping[str, Any], ctx: Context) -> None:
    """Every transaction of the bundle is the contract's alone (ADR 0028): no other contract's messages,
    readings, devices or records ride along in its arguments or write set."""
    cid, devices = str(contract.get("id")), {str(a) for a in contract.get("assets") or []}
    for tx in sorted(ctx.txs.values(), key=lambda t: (t.block, t.index)):
        for finding in foreign_data(cid, devices, tx.fn, tx.args, tx.writes):
            ctx.report.fail(f"tx {short(tx.tx_id)}", "disclosure", finding)


def _assets(contract: Mapping[str, Any], assets: list[dict[str, Any]], ctx: Context) -> dict[str, str]:
    """Device public keys as registered on the ledger, for the contract's assets."""
    report = ctx.report
    by_id = {a.get("id"): a for a in assets}
    out: dict[str, str] = {}
    for aid in contract.get("assets") or []:
        part = f"asset {aid}"
        asset = by_id.get(aid)
        if asset is None:
            report.fail(part, "missing", "asset of the contract is not in the bundle")
            continue
        reg, registered = _written(ctx, asset.get("registered_tx"), keys.asset(aid))
        if reg is None or registered is None or reg.fn != "RegisterAsset":
            report.fail(part, "missing_tx", "the transaction that registered it is not in the bundle")
            continue
        report.count("assets")
        if registered.get("public_key") != asset.get("public_key"):
            report.fail(
                part, "differs", f"public key differs from the one registered in tx {short(reg.tx_id)}"
            )
        if registered.get("provider") != contract.get("provider"):
            report.fail(part, "differs", f"registered by {registered.get('provider')}, not the provider")
        last = _last_writer(ctx, keys.asset(aid))
        if last is not None and json.loads(last.writes[keys.asset(aid)]) != asset:
            report.fail(
                part, "differs", f"record differs from its last version, written by tx {short(last.tx_id)}"
            )
        out[aid] = str(registered.get("public_key"))
    return out


def _last_writer(ctx: Context, key: str) -> VerifiedTx | None:
    writers = [t for t in ctx.txs.values() if t.writes.get(key) is not None]
    return max(writers, key=lambda t: (t.block, t.index)) if writers else None


def _invoice(invoice: dict[str, Any], contract: Mapping[str, Any], ctx: Context) -> None:
    report = ctx.report
    iid = str(invoice.get("id"))
    key = keys.invoice(iid)
    if iid != keys.invoice_id(str(contract.get("id")), str(invoice.get("period"))):
        report.fail("invoice", "differs", f"id {iid} is not that of contract {contract.get('id')}'s period")
    close, issued = _written(ctx, invoice.get("tx_id"), key)
    if close is None or issued is None or close.fn != "CloseBillingPeriod":
        report.fail("invoice", "missing_tx", "the closing transaction that issued it is not in the bundle")
        return
    try:
        _start, end = rating.period_bounds(str(invoice.get("period")), str(contract.get("timezone")))
        if close.timestamp < end:
            report.fail("invoice", "period", f"closing tx {short(close.tx_id)} ran before the period ended")
    except (ValueError, KeyError, rating.UnknownTimezone) as exc:
        report.fail("invoice", "period", f"period or timezone unreadable: {exc}")
    for f in MONEY_FIELDS:
        if invoice.get(f) != issued.get(f):
            report.fail(
                "invoice", "differs", f"{f} differs from the invoice issued in tx {short(close.tx_id)}"
            )
    parties = {contract.get("provider"), contract.get("customer")}
    writers = sorted(
        (t for t in ctx.txs.values() if t.writes.get(key) is not None), key=lambda t: (t.block, t.index)
    )
    for t in writers:
        if not parties <= t.endorsers:
            report.fail(
                f"tx {short(t.tx_id)}",
                "policy",
                f"writes invoice {iid} without endorsements of both {sorted(map(str, parties))}",
            )
    last = writers[-1]
    if json.loads(last.writes[key]) != invoice:
        report.fail(
            "invoice", "differs", f"record differs from its last version, written by tx {short(last.tx_id)}"
        )
    report.count("invoice")


def _reading_key(contract: Mapping[str, Any], cid: str, period: str, rec: Mapping[str, Any]) -> str:
    """Where the reading's recording transaction wrote it: (device, reading id) under the contract's
    reading key layout (ADR 0026; the layout is a field of the contract as agreed)."""
    try:
        version = keys.reading_key_version(contract)
    except ValueError:
        return ""  # a layout this verifier does not know: no key matches, every reading is reported
    return keys.reading_in_layout(version, cid, period, str(rec.get("device_id")), str(rec.get("id")))


def _readings(
    invoice: Mapping[str, Any],
    contract: Mapping[str, Any],
    readings: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    ctx: Context,
) -> None:
    report = ctx.report
    cid, period = str(invoice.get("contract_id")), str(invoice.get("period"))
    # per signed message, its readings by id (one message may hold thousands)
    signed = {
        (m["message"].get("device_id"), m["message"].get("message_id")): {
            r.get("id"): r for r in m["message"].get("readings") or [] if isinstance(r, dict)
        }
        for m in messages
    }
    for rec in readings:
        rid = str(rec.get("id"))
        part = f"reading {rid}"
        report.count("readings")
        if rec.get("contract_id") != cid or (rec.get("period") != period and not is_late(rec, period)):
            report.fail(
                part, "period", f"belongs to {rec.get('contract_id')} {rec.get('period')}, not the invoice's"
            )
        key = _reading_key(contract, cid, own_period(rec, period), rec)
        tx, stored = _written(ctx, rec.get("tx_id"), key)
        if tx is None:
            report.fail(part, "missing_tx", f"recording transaction {rec.get('tx_id')} is not in the bundle")
        elif stored is None:
            report.fail(part, "not_written", f"not written by recorded transaction {short(tx.tx_id)}")
        else:
            for f in sorted(set(stored) | set(rec)):
                if stored.get(f) != rec.get(f):
                    report.fail(part, "differs", f"{f} differs from recorded transaction {short(tx.tx_id)}")
            _not_after(part, rec.get("timestamp"), tx, report)
        message = signed.get((rec.get("device_id"), rec.get("message_id")))
        if message is None:
            report.fail(part, "message", f"its signed message {rec.get('message_id')} is not in the bundle")
            continue
        sent = message.get(rid)
        if sent is None:
            report.fail(part, "message", f"not in signed message {rec.get('message_id')}")
            continue
        for f in READING_FIELDS:
            if sent.get(f) != rec.get(f):
                report.fail(part, "message", f"{f} differs from signed message {rec.get('message_id')}")
    _completeness(invoice, contract, readings, ctx)


def _not_after(part: str, stamp: Any, tx: VerifiedTx, report: VerificationReport) -> None:
    """The chaincode refuses readings more than 5 minutes after the recording transaction's time."""
    try:
        when = rating.parse_timestamp(stamp)
    except (TypeError, ValueError):
        return  # reported by the recomputation
    if when > tx.timestamp + FUTURE_TOLERANCE:
        report.fail(part, "timestamp", f"is later than its recording transaction {short(tx.tx_id)} allows")


def _completeness(
    invoice: Mapping[str, Any], contract: Mapping[str, Any], readings: list[dict[str, Any]], ctx: Context
) -> None:
    """The closing transaction's range read over the period's usage batches names every recording
    transaction (batch key = usagebatch~contract~period~tx_id) with the version it read: the bundle must
    hold exactly those transactions, and exactly the readings they wrote for this period."""
    report = ctx.report
    cid, period = str(invoice.get("contract_id")), str(invoice.get("period"))
    close = ctx.txs.get(invoice.get("tx_id"))  # type: ignore[arg-type]
    if close is None:
        return
    start, _end = partial_key_range(keys.USAGE_BATCH, [cid, period])
    scans = [r for r in close.ranges if r.start == start]
    if not scans:
        report.fail("invoice", "completeness", f"closing tx {short(close.tx_id)} read no usage batches")
        return
    batches: dict[str, Any] = {}
    for key, version in scans[0].results:
        batches[split_composite_key(key)[1][-1]] = version
    late = late_evidence.late_batches(close, cid, period)  # late usage billed here (ADR 0048)
    batches.update(late)
    prefix = keys.readings_prefix(cid, period)
    on_ledger: dict[str, str] = {}  # reading key -> the transaction that wrote it
    for tx_id, version in sorted(batches.items()):
        tx = ctx.txs.get(tx_id)
        if tx is None:
            report.fail(
                "invoice",
                "completeness",
                f"closing tx {short(close.tx_id)} merged usage of tx {short(tx_id)}, not in the bundle",
            )
            continue
        if tx.creator not in (invoice.get("provider"), invoice.get("customer")):
            report.fail(f"tx {short(tx_id)}", "creator", f"recorded usage, but {tx.creator} is not a party")
        if version != (tx.block, tx.index):
            report.fail(
                f"tx {short(tx_id)}",
                "completeness",
                f"closing tx read its batch at version {version}, it sits at {(tx.block, tx.index)}",
            )
        for key in tx.writes:
            if key.startswith(prefix):
                on_ledger[key] = tx_id
        if tx_id in late:
            on_ledger.update(dict.fromkeys(late_evidence.late_keys(tx, cid, period), tx_id))
    for tx_id in sorted({str(r.get("tx_id")) for r in readings} - set(batches)):
        report.fail(
            f"tx {short(tx_id)}", "completeness", "recorded readings the closing transaction did not merge"
        )
    shown = {_reading_key(contract, cid, own_period(r, period), r) for r in readings}
    for key in sorted(set(on_ledger) - shown):
        report.fail(
            f"reading {split_composite_key(key)[1][-1]}",
            "missing",
            f"recorded by tx {short(on_ledger[key])} but missing from the bundle",
        )


def _messages(
    messages: list[dict[str, Any]], readings: list[dict[str, Any]], pubkeys: dict[str, str], ctx: Context
) -> None:
    report = ctx.report
    for entry in messages:
        message = entry["message"]
        dev, mid = str(message.get("device_id")), str(message.get("message_id"))
        part = f"message {mid}"
        key = keys.usage_message(dev, mid)
        writer = next((t for t in ctx.txs.values() if t.writes.get(key) is not None), None)
        if writer is None:
            report.fail(part, "not_written", "not recorded by any transaction of the bundle")
        else:
            try:
                same = canonical(message) == writer.writes[key]
            except ChaincodeError:
                same = False
            if not same:
                report.fail(part, "differs", f"differs from the message recorded in tx {short(writer.tx_id)}")
        pem = pubkeys.get(dev)
        if pem is None:
            report.fail(part, "device", f"device {dev} is not a proven asset of the contract")
        else:
            report.count("device signatures")
            try:
                verify_message(message, pem)
            except ChaincodeError as exc:
                report.fail(
                    part,
                    "device_signature",
                    f"device signature does not verify with {dev}'s registered key: {exc.message}",
                )
        contributed = sorted(
            str(r.get("id")) for r in readings if r.get("device_id") == dev and r.get("message_id") == mid
        )
        if sorted(map(str, entry.get("readings") or [])) != contributed:
            report.fail(part, "contributed", "listed readings differ from the readings recorded from it")
        report.count("messages")


def _final_after_interims(invoice: Mapping[str, Any], report: VerificationReport) -> dict[str, Any]:
    """A final invoice that deducts interim invoices: the whole period (`period_total`) is what rating must
    give; the invoice's own figures must be that minus `deducted`. Returns the figures to recompute."""
    whole, deducted = invoice["period_total"], invoice.get("deducted") or {}
    for f in ("subtotal", "tax", "total"):
        try:
            ok = Decimal(str(invoice.get(f))) == Decimal(str(whole.get(f))) - Decimal(str(deducted.get(f)))
        except (ArithmeticError, ValueError):
            ok = False
        if not ok:
            report.fail("invoice", f"{f}_after_interims", f"{f} is not the period's {f} minus the interims'")
    return {**invoice, **{f: whole.get(f) for f in ("lines", "subtotal", "tax", "total")}}


def _recompute(
    invoice: Mapping[str, Any],
    contract: Mapping[str, Any],
    readings: list[dict[str, Any]],
    report: VerificationReport,
) -> None:
    """Rate the proven readings with the agreed plan, with the chaincode's own rating code."""
    try:
        plan = rating.parse_plan(dict(contract))
    except (rating.PlanError, KeyError, TypeError, ValueError) as exc:
        report.fail("contract", "plan", f"plan does not parse: {exc}")
        return
    parsed, late_parsed = [], []
    period = str(invoice.get("period"))
    for rec in readings:
        try:
            reading = rating.reading_from_record(rec)
        except (KeyError, TypeError, ValueError) as exc:
            report.fail(f"reading {rec.get('id')}", "format", f"unreadable: {exc}")
            continue
        if rating.period_of(reading.timestamp, plan.timezone) != own_period(rec, period):
            report.fail(f"reading {reading.id}", "period", "timestamp is outside the invoice's period")
        (late_parsed if is_late(rec, period) else parsed).append(reading)
    agg = rating.batch_aggregate(plan, parsed)
    digest = rating.digest_hex(rating.combine_digests(r.digest or 0 for r in parsed))
    if invoice.get("readings") != len(parsed):
        report.fail(
            "invoice",
            "readings",
            f"counts {invoice.get('readings')} readings, the bundle proves {len(parsed)}",
        )
    if invoice.get("readings_digest") != digest:
        report.fail(
            "invoice", "readings_digest", "readings digest differs from the digest of the proven readings"
        )
    base = amended_evidence.rated_base(contract, plan, period, parsed) or rating.rate(plan, agg).to_json()
    rated = late_evidence.expected(contract, plan, base, late_parsed)
    report.count("recomputed invoice")
    if isinstance(invoice.get("period_total"), Mapping):  # a final invoice after interims (ADR 0051)
        invoice = _final_after_interims(invoice, report)
    for f in ("late_readings", "late_readings_digest"):
        if invoice.get(f) != rated.get(f):
            report.fail("invoice", f, f"{f} {invoice.get(f)} differs from recomputed {rated.get(f)}")
    shown = {line_key(ln): ln for ln in invoice.get("lines") or [] if isinstance(ln, dict)}
    expected = {line_key(ln): ln for ln in rated["lines"]}
    for cid in [*expected, *(c for c in shown if c not in expected)]:
        mine, theirs = expected.get(cid), shown.get(cid)
        if mine is None or theirs is None:
            report.fail(
                f"invoice line {late_evidence.label(cid)}",
                "line",
                "line missing" if theirs is None else "line not produced by rating",
            )
            continue
        for f in ("model", "metric", "quantity", "amount"):
            if mine.get(f) != theirs.get(f):
                report.fail(
                    f"invoice line {late_evidence.label(cid)}",
                    f"line_{f}",
                    f"{f} {theirs.get(f)} differs from recomputed {mine.get(f)}",
                )
    if [line_key(ln) for ln in invoice.get("lines") or [] if isinstance(ln, dict)] != list(expected):
        report.fail("invoice", "lines", "lines are not the recomputed lines in plan order")
    for f in ("subtotal", "tax", "total"):
        if invoice.get(f) != rated[f]:
            report.fail("invoice", f, f"{f} {invoice.get(f)} differs from recomputed {rated[f]}")
    if invoice.get("currency") != plan.currency:
        report.fail(
            "invoice", "currency", f"currency {invoice.get('currency')} is not the plan's {plan.currency}"
        )
