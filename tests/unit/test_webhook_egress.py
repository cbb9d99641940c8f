"""The webhook egress policy (hub/delivery/egress.py) on its own: which URLs a tenant may make the hub
call, with an injected resolver standing in for DNS."""

from __future__ import annotations

import pytest

from hub.delivery.egress import (
    EgressPolicy,
    EgressRefused,
    Unresolvable,
    check_url,
    literal_address,
    pinned_request,
)

PUBLIC = "93.184.215.14"
STRICT = EgressPolicy()


def resolver(answers: dict[str, list[str]]):
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


FORBIDDEN = [
    "https://127.0.0.1/hook",
    "https://127.0.0.1:8080/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://api.localhost/hook",
    "https://[::1]/hook",
    "https://10.0.0.5/hook",
    "https://172.16.3.4/hook",
    "https://172.31.255.254/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00::1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://[fe80::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://0.0.0.0/hook",
    "https://[::]/hook",
    "https://2130706433/hook",  # 127.0.0.1 as one decimal number
    "https://0x7f000001/hook",  # ... as hex
    "https://0177.0.0.1/hook",  # ... octal
    "https://127.1/hook",  # ... short form
    "https://0xa9fea9fe/hook",  # 169.254.169.254 as hex
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://224.0.0.1/hook",  # multicast
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:c0a8:101::1]/hook",  # 6to4 of 192.168.1.1
]


@pytest.mark.parametrize("url", FORBIDDEN)
def test_private_loopback_link_local_and_metadata_targets_are_refused(url: str) -> None:
    resolve = resolver({})
    with pytest.raises(EgressRefused) as refused:
        check_url(url, STRICT, resolve=resolve)
    assert refused.value.code == "webhook_url_forbidden"
    assert resolve.calls == []  # decided from the URL alone: no DNS query for a literal or localhost


def test_a_public_address_or_name_is_allowed_and_pinned() -> None:
    resolve = resolver({"hooks.example.com": [PUBLIC]})
    assert check_url(f"https://{PUBLIC}/h", STRICT, resolve=resolve).addresses == (PUBLIC,)
    target = check_url("https://hooks.example.com:8443/h?x=1", STRICT, resolve=resolve)
    assert target.addresses == (PUBLIC,)
    url, headers, extensions = pinned_request(target, target.addresses[0])
    assert url == f"https://{PUBLIC}:8443/h?x=1"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}


@pytest.mark.parametrize("answers", [["10.1.2.3"], [PUBLIC, "127.0.0.1"], ["::1"], ["169.254.169.254"],
                                     ["::ffff:192.168.0.1"]])
def test_a_name_resolving_to_any_private_address_is_refused(answers: list[str]) -> None:
    with pytest.raises(EgressRefused, match="resolves to"):
        check_url("https://hooks.example.com/h", STRICT, resolve=resolver({"hooks.example.com": answers}))


def test_https_only_unless_http_is_allowed() -> None:
    resolve = resolver({})
    for url in (f"http://{PUBLIC}/h", f"ftp://{PUBLIC}/h", "file:///etc/passwd", f"gopher://{PUBLIC}/"):
        with pytest.raises(EgressRefused, match="scheme"):
            check_url(url, STRICT, resolve=resolve)
    assert check_url(f"http://{PUBLIC}/h", EgressPolicy(allow_http=True), resolve=resolve).port == 80
    with pytest.raises(EgressRefused, match="scheme"):
        check_url(f"ftp://{PUBLIC}/h", EgressPolicy(allow_http=True, allow_private=True), resolve=resolve)


def test_allow_private_lets_the_operator_use_internal_receivers() -> None:
    policy = EgressPolicy(allow_private=True, allow_http=True)
    target = check_url("http://localhost:8080/h", policy, resolve=resolver({"localhost": ["127.0.0.1"]}))
    assert target.addresses == ("127.0.0.1",)
    assert check_url("http://127.0.0.1:9/h", policy, resolve=resolver({})).addresses == ("127.0.0.1",)


def test_unresolvable_names_pass_registration_but_not_a_send() -> None:
    resolve = resolver({})
    assert check_url("https://nowhere.example/h", STRICT, resolve=resolve, must_resolve=False).addresses == ()
    with pytest.raises(Unresolvable):
        check_url("https://nowhere.example/h", STRICT, resolve=resolve)


def test_literal_forms() -> None:
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("[::1]")) == "::1"
    assert str(literal_address("fe80::1%eth0")) == "fe80::1"
    assert literal_address("hooks.example.com") is None
