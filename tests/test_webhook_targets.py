"""Webhook targets: what the gateway refuses to call (SSRF), and the connection pinned to the checked address.

The resolver is injected: no test here asks DNS anything.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib import errors
from chalicelib.webhooks.targets import PinnedAdapter, Target, Targets
from tests.loopback import Handler, serving

PUBLIC = "93.184.215.14"


def resolver(answers: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"no such name: {host}")
        return answers[host]

    return resolve


NAMES = {"hooks.example": [PUBLIC], "internal.example": ["10.1.2.3"], "mixed.example": [PUBLIC, "192.168.0.9"],
         "meta.example": ["169.254.169.254"], "v6meta.example": ["fd00:ec2::254"], "cgnat.example": ["100.64.0.1"],
         "mapped.example": ["::ffff:127.0.0.1"]}
DEPLOYED = Targets(allow_private=False, resolve=resolver(NAMES))


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/", "https://127.8.9.10/", "https://10.0.0.1/", "https://172.16.5.4/", "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data/", "https://169.254.1.1/", "https://100.64.0.1/",
    "https://100.127.255.254/", "https://0.0.0.0/", "https://224.0.0.1/", "https://239.255.255.250/",
    "https://240.0.0.1/", "https://255.255.255.255/",
    "https://[::1]/", "https://[::]/", "https://[fd00:ec2::254]/", "https://[fc00::1]/", "https://[fe80::1]/",
    "https://[ff02::1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:a9fe:a9fe]/", "https://[::ffff:10.0.0.1]/",
    "https://[2002:7f00:1::]/", "https://[2002:c0a8:0101::1]/", "https://[64:ff9b::a00:1]/",
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1 (inverted)
    "https://localhost/", "https://LOCALHOST./", "https://api.localhost/",
    "https://2130706433/", "https://0x7f000001/", "https://0x7f.0x0.0x0.0x1/", "https://0177.0.0.1/",
    "https://017700000001/", "https://127.1/", "https://0/", "https://3232235777/",
    "https://internal.example/", "https://mixed.example/", "https://meta.example/", "https://v6meta.example/",
    "https://cgnat.example/", "https://mapped.example/",
])
def test_a_non_public_target_is_refused_when_private_targets_are_not_allowed(url: str) -> None:
    with pytest.raises(errors.InvalidWebhookUrl) as refused:
        DEPLOYED.check(url)
    assert refused.value.status == 422 and refused.value.code == "invalid_webhook_url"
    assert refused.value.details["reason"] == refused.value.message


@pytest.mark.parametrize("url, reason", [
    ("http://hooks.example/", "https"), ("ftp://hooks.example/", "https"), ("hooks.example/x", "https"),
    ("https://user:pw@hooks.example/", "user name"), ("https://hooks.example:99999/", "port"),
    ("https:///x", "no host"), ("https://nowhere.example/", "does not resolve"), ("https://a b/", "spaces"),
    ("https://hooks.example/\n", "control"), ("https://" + "a" * 2050 + ".example/", "2048"),
    ("https://1.2.3.4.5/", "neither"), ("https://exa_mple.com/", "not a host name"),
])
def test_a_refusal_says_why(url: str, reason: str) -> None:
    with pytest.raises(errors.InvalidWebhookUrl, match=reason):
        DEPLOYED.check(url)


def test_a_public_https_target_is_taken_with_its_checked_address() -> None:
    target = DEPLOYED.check("https://hooks.example/zap/1?x=2")
    literal = DEPLOYED.check(f"https://{PUBLIC}:8443/")

    assert (target.host, target.port, target.address, target.scheme) == ("hooks.example", 443, PUBLIC, "https")
    assert (literal.address, literal.port) == (PUBLIC, 8443)
    assert DEPLOYED.check("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/").address.startswith("2606:")


def test_private_targets_are_allowed_for_local_development() -> None:
    local = Targets(allow_private=True, resolve=resolver({"localhost": ["127.0.0.1"]}))

    assert local.check("http://127.0.0.1:9000/hook").address == "127.0.0.1"
    assert local.check("http://localhost:9000/hook").address == "127.0.0.1"
    with pytest.raises(errors.InvalidWebhookUrl):
        local.check("ftp://127.0.0.1/")


class Echo(Handler):
    """Answers each POST with the Host header it got."""

    def do_POST(self) -> None:
        self.read_request()
        body = (self.headers.get("Host") or "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_the_connection_goes_to_the_checked_address_whatever_the_name_resolves_to_now() -> None:
    # given a name that no resolver knows (DNS would now answer anything): the checked
    # address is where the request goes, with the name in Host
    with serving(Echo) as (url, _):
        port = int(url.split(":")[2].split("/")[0])
        target = Target(url=f"http://rebound.invalid:{port}/hook", scheme="http", host="rebound.invalid",
                        port=port, address="127.0.0.1")
        session = requests.Session()
        session.trust_env = False
        session.mount("http://", PinnedAdapter(target))

        answer = session.post(target.url, data=b"{}", timeout=10)

    assert answer.status_code == 200 and answer.text == f"rebound.invalid:{port}"


def test_tls_to_the_pinned_address_still_checks_the_certificate_for_the_urls_name(tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("hooks.example").configure_cert(server)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with serving(Echo, tls=server) as (url, _):
        port = int(url.split(":")[2].split("/")[0])

        def post(host: str) -> requests.Response:
            target = Target(url=f"https://{host}:{port}/", scheme="https", host=host, port=port, address="127.0.0.1")
            session = requests.Session()
            session.trust_env = False
            session.mount("https://", PinnedAdapter(target))
            return session.post(target.url, data=b"{}", timeout=10, verify=str(bundle))

        assert post("hooks.example").text == f"hooks.example:{port}"  # SNI and Host carry the name
        with pytest.raises(requests.exceptions.SSLError):
            post("other.example")  # the certificate is for hooks.example only


def test_port_zero_is_refused() -> None:
    with pytest.raises(errors.InvalidWebhookUrl, match="port"):
        DEPLOYED.check("https://hooks.example:0/")
