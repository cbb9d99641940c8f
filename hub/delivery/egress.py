"""Where a tenant-chosen URL (an alert webhook) may send the hub: the egress policy against SSRF.

A customer or provider names the webhook URL, and the hub POSTs to it from inside the operator's network.
Without a policy that reaches loopback services, the private network and cloud metadata endpoints. So:

* only `https` (`http` when the operator sets `webhook_allow_http`);
* the host must resolve to public addresses only: no loopback, private (RFC 1918, ULA), link-local
  (169.254.0.0/16 with the metadata endpoints, fe80::/10), CGNAT, unspecified, multicast, reserved or
  documentation addresses, including IPv4 written in other forms (`2130706433`, `0x7f000001`, `0177.1`)
  and IPv4 inside IPv6 (`::ffff:127.0.0.1`, 6to4, NAT64, Teredo); `localhost` and `*.localhost` by name;
* checked when the URL is registered (400 `webhook_url_forbidden`) and again at every send, against the
  addresses the name resolves to *then* (DNS answers change); the send connects to the address that was
  checked (`pinned_request`), so a rebinding between the check and the connection cannot win;
* `webhook_allow_private` turns the address rule off, for an operator whose receivers are internal (and
  for the project's own tests and demo, whose receivers listen on 127.0.0.1).

A refused target is never contacted, so the answer to the tenant cannot tell an open port from a closed one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from hub.config import Settings

FORBIDDEN_CODE = "webhook_url_forbidden"
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host -> every address it resolves to now (strings); raises OSError when it does not resolve
Resolver = Callable[[str, int], Sequence[str]]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class EgressRefused(Exception):
    """The URL may not be contacted under the policy; `reason` is short and safe to show the tenant."""

    code = FORBIDDEN_CODE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolvable(EgressRefused):
    """The name does not resolve now (DNS may be down): at send time a reason to try later."""


@dataclass(frozen=True)
class EgressPolicy:
    allow_private: bool = False
    allow_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        return cls(allow_private=settings.webhooks.allow_private, allow_http=settings.webhooks.allow_http)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def literal_address(host: str) -> IpAddress | None:
    """The address `host` names when it is an IP literal in any form a resolver accepts (dotted, decimal,
    hex, octal, short IPv4; IPv6 with or without brackets or a zone), else None."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))  # 2130706433, 0x7f.1, 0177.0.0.1, 127.1
    except (OSError, ValueError):
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_address(address: IpAddress) -> str | None:
    """Why `address` may not be contacted (None: it is a public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return forbidden_address(inner)
    for label, flag in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                        ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
                        ("private", address.is_private), ("reserved", address.is_reserved)):
        if flag:
            return f"{label} address"
    if not address.is_global:
        return "non-public address"
    return None


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]  # the checked addresses (empty: not resolved, registration only)


def check_url(url: str, policy: EgressPolicy, *, resolve: Resolver | None = system_resolver,
              must_resolve: bool = True) -> Target:
    """Check `url` against `policy`; raises `EgressRefused`. `resolve` None checks the URL text only.
    `must_resolve` False (registration) accepts a name that does not resolve now: it is checked again,
    resolved, at every send."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused("not a valid URL") from exc
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if policy.allow_http else ("https",)
    if scheme not in allowed:
        raise EgressRefused(f"scheme {scheme or '(none)'!r} is not allowed (only {' or '.join(allowed)})")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise EgressRefused("no host")
    port = port or (443 if scheme == "https" else 80)
    if policy.allow_private:
        addresses: tuple[str, ...] = ()
        if resolve is not None and must_resolve:
            addresses = tuple(_resolve(resolve, host, port))
        return Target(url, host, port, addresses)
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        raise EgressRefused("loopback host name")
    literal = literal_address(host)
    if literal is not None:
        why = forbidden_address(literal)
        if why is not None:
            raise EgressRefused(f"{why} not allowed")
        return Target(url, host, port, (str(literal),))
    if resolve is None:
        return Target(url, host, port, ())
    try:
        found = _resolve(resolve, host, port)
    except Unresolvable:
        if must_resolve:
            raise
        return Target(url, host, port, ())
    for text in found:
        why = forbidden_address(ipaddress.ip_address(text.split("%", 1)[0]))
        if why is not None:
            raise EgressRefused(f"the host resolves to a {why}")
    return Target(url, host, port, tuple(found))


def _resolve(resolve: Resolver, host: str, port: int) -> list[str]:
    literal = literal_address(host)
    if literal is not None:
        return [str(literal)]
    try:
        found = [str(a) for a in resolve(host, port)]
    except (OSError, UnicodeError) as exc:
        raise Unresolvable("the host does not resolve") from exc
    if not found:
        raise Unresolvable("the host does not resolve")
    return found


def pinned_request(target: Target, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, extra headers and request extensions that make httpx connect to `address` (one of the checked
    ones) while the name stays in the Host header and in TLS (SNI and certificate verification)."""
    pinned = httpx.URL(target.url).copy_with(host=address.split("%", 1)[0])
    host_header = f"[{target.host}]" if ":" in target.host else target.host
    default = (urlsplit(target.url).scheme.lower(), target.port) in (("https", 443), ("http", 80))
    headers = {"Host": host_header if default else f"{host_header}:{target.port}"}
    extensions = {"sni_hostname": target.host} if literal_address(target.host) is None else {}
    return str(pinned), headers, extensions


@dataclass(frozen=True)
class Egress:
    """The policy and the resolver a send uses, handed to connectors as `ConnectorConfig.egress`. `resolve`
    is looked up at each send (`resolver()`), so a resolver set on the engine later still applies."""

    policy: EgressPolicy
    resolver: Callable[[], Resolver] = lambda: system_resolver

    def check(self, url: str) -> Target:
        """`check_url` with the addresses the name resolves to now; raises `EgressRefused`/`Unresolvable`."""
        return check_url(url, self.policy, resolve=self.resolver())
