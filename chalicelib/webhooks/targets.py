"""Where a webhook may be sent: the URL rules, the address checks, and a connection pinned to them.

A webhook URL is chosen by a caller and fetched by the gateway from inside AWS, so it
could point the gateway at what only the gateway can reach (the instance metadata
service, a VPC address, a loopback port): server-side request forgery. Deployed, a
target must be `https` and every address its host resolves to must be public; the
check runs when subscribing and again before each attempt (DNS can change).

The attempt then connects to the address that was checked (`PinnedAdapter`), not
to whatever the name resolves to a moment later, so a name that answers a public
address to the check and a private one to the connection (DNS rebinding) gets
nowhere; TLS still verifies the certificate against the URL's host name, sent as
SNI and in `Host`.

`WEBHOOK_ALLOW_PRIVATE_TARGETS=true` (the local run) allows `http` and every address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from requests import PreparedRequest

from chalicelib import errors
from chalicelib.deadline import DeadlineAdapter

Resolve = Callable[[str, int], list[str]]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL = 2048
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What WHATWG URL readers (and inet_aton) take for an IPv4 address: dotted parts in
# decimal, 0x hex or 0-led octal, possibly fewer than four (127.1, 2130706433, 0x7f000001).
_IPV4_PART = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.I)
_NAMEISH = re.compile(r"[0-9a-z.-]+", re.I)


def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True)
class Target:
    """A checked URL and the address an attempt connects to."""

    url: str
    scheme: str
    host: str  # as the URL names it (no brackets): SNI, the certificate's name and `Host`
    port: int
    address: str


class Targets:
    def __init__(self, allow_private: bool = False, resolve: Resolve = system_resolve) -> None:
        self.allow_private = allow_private
        self._resolve = resolve

    def check(self, url: Any) -> Target:
        """The target, or `InvalidWebhookUrl` saying why not."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise _refused(f"url must be an absolute URL of at most {MAX_URL} characters.")
        if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7f for c in url):
            raise _refused("url must not hold spaces or control characters.")
        parts = urlsplit(url)
        schemes = ("http", "https") if self.allow_private else ("https",)
        if parts.scheme.lower() not in schemes:
            raise _refused(f"url must use {' or '.join(schemes)}" + ("" if self.allow_private else
                           " (http and private addresses are allowed only in local development)") + ".")
        if "@" in parts.netloc:
            raise _refused("url must not carry a user name or password.")
        try:
            given = parts.port
        except ValueError:
            given = 0
        if given == 0:
            raise _refused("url has a port that is not a number from 1 to 65535.")
        port = given or (443 if parts.scheme.lower() == "https" else 80)
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise _refused("url has no host.")
        literal = _literal(host, bracketed=parts.netloc.count("[") > 0)
        if literal is None and (host == "localhost" or host.endswith(".localhost")) and not self.allow_private:
            raise _refused(f"{host} is this machine (loopback); the target must be a public address.")
        addresses = [literal] if literal is not None else self._lookup(host, port)
        if not self.allow_private:
            for address in addresses:
                kind = private_kind(address)
                if kind is not None:
                    shown = host if literal is not None else f"{host} resolves to {address}, which"
                    raise _refused(f"{shown} is {_article(kind)} {kind} address; the target must be a public address.")
        return Target(url=url, scheme=parts.scheme.lower(), host=host, port=port, address=str(addresses[0]))

    def _lookup(self, host: str, port: int) -> list[IP]:
        if not _NAMEISH.fullmatch(host) or ".." in host:
            raise _refused(f"{host[:80]} is not a host name.")
        try:
            found = self._resolve(host, port)
        except (OSError, UnicodeError):
            found = []
        addresses = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise _refused(f"{host} does not resolve to an address.")
        return addresses


def private_kind(address: IP) -> str | None:
    """What kind of non-public address this is (for the refusal), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = private_kind(embedded)
            if inner is not None:
                return f"{inner} (inside IPv6)"
    checks = (("cloud metadata", address in _METADATA), ("unspecified", address.is_unspecified),
              ("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("multicast", address.is_multicast),
              ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in _CGNAT),
              ("private", address.is_private), ("reserved", address.is_reserved),
              ("non-global", not address.is_global))
    return next((kind for kind, hit in checks if hit), None)


def _literal(host: str, bracketed: bool) -> IP | None:
    """The address a host that is an IP literal names, in any form a URL reader accepts; else None."""
    if bracketed or ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _refused(f"{host[:80]} is not an IPv6 address (zones are not accepted).") from None
    labels = host.split(".")
    if not _IPV4_PART.fullmatch(labels[-1]):
        return None  # a name: its last label is not a number
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise _refused(f"{host[:80]} is neither a host name nor an IPv4 address.") from None


def _refused(reason: str) -> errors.InvalidWebhookUrl:
    return errors.InvalidWebhookUrl(reason, details={"field": "url", "reason": reason})


class PinnedAdapter(DeadlineAdapter):
    """Connects to the target's checked address while the request keeps the URL's host name:
    in `Host`, as TLS SNI, and as the name the certificate must carry. Its connections
    answer to the deadline watchdog (chalicelib/deadline.py), as the panel client's do."""

    def __init__(self, target: Target) -> None:
        super().__init__(max_retries=0)
        self._target = target

    def build_connection_pool_key_attributes(self, request: PreparedRequest, verify: Any,
                                             cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params["host"] = self._target.address
        extra: dict[str, Any] = pool_kwargs  # type: ignore[assignment]  # urllib3 takes these too
        if host_params["scheme"] == "https":
            extra["server_hostname"] = self._target.host
            extra["assert_hostname"] = self._target.host
        return host_params, pool_kwargs

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        default = 443 if self._target.scheme == "https" else 80
        name = f"[{self._target.host}]" if ":" in self._target.host else self._target.host
        request.headers["Host"] = name if self._target.port == default else f"{name}:{self._target.port}"
        return super().send(request, *args, **kwargs)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
