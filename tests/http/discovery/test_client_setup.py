"""What mail clients fetch to set themselves up, fetched as they fetch it: Thunderbird's
autoconfig (both paths), Outlook's POX autodiscover, an Apple profile; the MTA-STS
policy; the front page and /docs with its assets served locally."""

from __future__ import annotations

import plistlib
from xml.etree import ElementTree as ET

import httpx
import pytest

from postern.domains.autoconfig import AUTODISCOVER_OUTLOOK_NS, AUTODISCOVER_REQUEST_NS, AUTODISCOVER_RESPONSE_NS
from postern.domains.records import client_ports
from postern.serve.runtime import Runtime
from tests.helpers import create_user

OUTLOOK_REQUEST = f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="{AUTODISCOVER_REQUEST_NS}">
  <Request>
    <EMailAddress>{{address}}</EMailAddress>
    <AcceptableResponseSchema>{AUTODISCOVER_OUTLOOK_NS}</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""


@pytest.fixture
async def hosted(client: httpx.AsyncClient) -> str:
    await create_user(client, "alice", address="alice@example.org")
    return "example.org"


async def test_thunderbird_autoconfig_by_address_and_by_host(anonymous: httpx.AsyncClient, runtime: Runtime, hosted: str) -> None:
    by_address = await anonymous.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "alice@example.org"})
    assert by_address.status_code == 200 and by_address.headers["content-type"].startswith("application/xml")
    by_host = await anonymous.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.org"})
    assert by_host.status_code == 200 and by_host.content == by_address.content

    root = ET.fromstring(by_address.content)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.org" and provider.findtext("domain") == "example.org"
    servers = provider.findall("incomingServer") + provider.findall("outgoingServer")
    expected = {("imap" if d.service.startswith("imap") else "pop3" if d.service.startswith("pop3") else "smtp", d.port) for d in client_ports(runtime.settings)}
    assert {(s.get("type"), int(s.findtext("port") or 0)) for s in servers} == expected
    for server in servers:
        # Every child the format requires, with the values it allows.
        assert server.findtext("hostname") == runtime.settings.hostname
        assert server.findtext("socketType") in ("SSL", "STARTTLS")
        assert server.findtext("authentication") == "password-cleartext"
        assert server.findtext("username") == "%EMAILADDRESS%"


async def test_autoconfig_only_for_hosted_domains(anonymous: httpx.AsyncClient, hosted: str) -> None:
    assert (await anonymous.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "eve@elsewhere.example"})).status_code == 404
    assert (await anonymous.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.elsewhere.example"})).status_code == 404
    assert (await anonymous.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "not an address"})).status_code == 400
    # An address that does not exist on a hosted domain answers the same as one that does.
    nobody = await anonymous.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "nobody@example.org"})
    somebody = await anonymous.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": "alice@example.org"})
    assert nobody.status_code == 200 and nobody.content == somebody.content


async def test_outlook_autodiscover(anonymous: httpx.AsyncClient, runtime: Runtime, hosted: str) -> None:
    answer = await anonymous.post("/autodiscover/autodiscover.xml", content=OUTLOOK_REQUEST.format(address="alice@example.org"))
    assert answer.status_code == 200, answer.text
    root = ET.fromstring(answer.content)
    assert root.tag == f"{{{AUTODISCOVER_RESPONSE_NS}}}Autodiscover"
    account = root.find(f"{{{AUTODISCOVER_OUTLOOK_NS}}}Response/{{{AUTODISCOVER_OUTLOOK_NS}}}Account")
    assert account is not None
    ns = f"{{{AUTODISCOVER_OUTLOOK_NS}}}"
    assert account.findtext(ns + "AccountType") == "email" and account.findtext(ns + "Action") == "settings"
    protocols = {p.findtext(ns + "Type"): p for p in account.findall(ns + "Protocol")}
    kinds = {"IMAP" if d.service.startswith("imap") else "POP3" if d.service.startswith("pop3") else "SMTP" for d in client_ports(runtime.settings)}
    assert "IMAP" in kinds and set(protocols) == kinds
    for protocol in protocols.values():
        assert protocol.findtext(ns + "Server") == runtime.settings.hostname
        assert protocol.findtext(ns + "LoginName") == "alice@example.org"
        assert int(protocol.findtext(ns + "Port") or 0) > 0 and protocol.findtext(ns + "SSL") == "on"
    # The capitalised path Outlook also uses.
    assert (await anonymous.post("/Autodiscover/Autodiscover.xml", content=OUTLOOK_REQUEST.format(address="alice@example.org"))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b"<Autodiscover/>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        b"<a>" + b"x" * 20_000 + b"</a>",
    ],
)
async def test_outlook_autodiscover_refuses_bad_requests(anonymous: httpx.AsyncClient, hosted: str, body: bytes) -> None:
    answer = await anonymous.post("/autodiscover/autodiscover.xml", content=body)
    assert answer.status_code == 400 and "error" in answer.json()


async def test_apple_profile_has_the_login_and_no_password(anonymous: httpx.AsyncClient, runtime: Runtime, hosted: str) -> None:
    answer = await anonymous.get("/mobileconfig", params={"emailaddress": "alice@example.org"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-apple-aspen-config"
    assert answer.headers["content-disposition"] == 'attachment; filename="alice.mobileconfig"'
    profile = plistlib.loads(answer.content)
    assert profile["PayloadType"] == "Configuration"
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed" and account["EmailAccountType"] == "EmailTypeIMAP"
    assert account["EmailAddress"] == account["IncomingMailServerUsername"] == account["OutgoingMailServerUsername"] == "alice@example.org"
    assert account["IncomingMailServerHostName"] == runtime.settings.hostname
    assert "IncomingPassword" not in account and "OutgoingPassword" not in account
    assert (await anonymous.get("/mobileconfig")).status_code == 400
    assert (await anonymous.get("/mobileconfig", params={"emailaddress": "eve@elsewhere.example"})).status_code == 404


async def test_mta_sts_policy(anonymous: httpx.AsyncClient, runtime: Runtime) -> None:
    answer = await anonymous.get("/.well-known/mta-sts.txt")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    lines = answer.text.split("\r\n")
    assert lines[0] == "version: STSv1" and lines[-1] == ""
    fields = dict(line.split(": ", 1) for line in lines[:-1])
    assert fields["mode"] in ("testing", "enforce", "none") and fields["mx"] == runtime.settings.hostname
    assert 0 < int(fields["max_age"]) <= 31557600


async def test_front_page_and_docs_work_offline(anonymous: httpx.AsyncClient) -> None:
    front = await anonymous.get("/")
    assert front.status_code == 200 and 'href="/docs"' in front.text
    page = await anonymous.get("/docs")
    assert page.status_code == 200 and "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Every asset the page names is served here, nothing from another host.
    for asset in ("/docs/static/swagger-ui.css", "/docs/static/swagger-ui-bundle.js", "/docs/init.js", "/docs/static/favicon-32x32.png"):
        assert asset in page.text
        fetched = await anonymous.get(asset)
        assert fetched.status_code == 200 and len(fetched.content) > 100, asset
    assert "http://" not in page.text and "https://" not in page.text
    for _name, url in (("a", "/openapi.json"), ("b", "/_matrix/identity/openapi.json")):
        assert url in page.text


def test_documents_for_a_production_layout(settings) -> None:  # type: ignore[no-untyped-def]
    from postern.domains import autoconfig

    production = settings.model_copy(
        update={"doors": "http,imap,submission", "imap_listen": "0.0.0.0:143", "imaps_listen": "0.0.0.0:993", "submission_listen": "0.0.0.0:587", "hostname": "mail.example.org"}
    )
    root = ET.fromstring(autoconfig.thunderbird(production, "example.org", "mail.example.org"))
    servers = [(s.tag, s.get("type"), s.findtext("port"), s.findtext("socketType")) for s in root.find("emailProvider")]  # type: ignore[union-attr]
    servers = [s for s in servers if s[0].endswith("Server")]
    assert servers == [
        ("incomingServer", "imap", "993", "SSL"),
        ("incomingServer", "imap", "143", "STARTTLS"),
        ("outgoingServer", "smtp", "587", "STARTTLS"),
    ]
    outlook = ET.fromstring(autoconfig.outlook(production, "alice@example.org", "mail.example.org"))
    ns = f"{{{AUTODISCOVER_OUTLOOK_NS}}}"
    protocols = [(p.findtext(ns + "Type"), p.findtext(ns + "Port"), p.findtext(ns + "Encryption")) for p in outlook.iter(ns + "Protocol")]
    assert protocols == [("IMAP", "993", "SSL"), ("SMTP", "587", "TLS")]
