"""The documents mail clients fetch to set themselves up (pure: no I/O).

- Thunderbird's autoconfig (``clientConfig`` version 1.1), fetched from
  ``https://autoconfig.<domain>/mail/config-v1.1.xml`` or
  ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml``;
- Outlook's POX autodiscover (``Autodiscover`` request and response schemas of 2006),
  posted to ``/autodiscover/autodiscover.xml``.

Both describe the doors from :func:`postern.domains.records.client_ports`: IMAP over
TLS (or STARTTLS), POP3 likewise, submission with STARTTLS. The login is the email
address, which every door accepts.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_untrusted

from postern.config import Settings
from postern.domains.records import ClientPort, client_ports

AUTODISCOVER_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
AUTODISCOVER_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"

# (client type, socket type) of each door.
_KINDS = {
    "imaps": ("imap", "SSL"),
    "imap": ("imap", "STARTTLS"),
    "pop3s": ("pop3", "SSL"),
    "pop3": ("pop3", "STARTTLS"),
    "submission": ("smtp", "STARTTLS"),
}


def _xml(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _by_preference(doors: list[ClientPort], kind: str) -> list[ClientPort]:
    """The doors of a kind, implicit TLS first (the clients try them in order)."""
    return [d for d in doors if _KINDS[d.service][0] == kind]


def thunderbird(settings: Settings, domain: str, display_name: str) -> bytes:
    """Thunderbird's clientConfig v1.1 for ``domain`` (ASCII form)."""
    host = settings.hostname.rstrip(".")
    doors = client_ports(settings)
    root = ET.Element("clientConfig", version="1.1")
    provider = _sub(root, "emailProvider")
    provider.set("id", domain)
    _sub(provider, "domain", domain)
    _sub(provider, "displayName", display_name)
    _sub(provider, "displayShortName", display_name)
    for kind, tag in (("imap", "incomingServer"), ("pop3", "incomingServer"), ("smtp", "outgoingServer")):
        for door in _by_preference(doors, kind):
            server = _sub(provider, tag)
            server.set("type", kind)
            _sub(server, "hostname", host)
            _sub(server, "port", str(door.port))
            _sub(server, "socketType", _KINDS[door.service][1])
            _sub(server, "authentication", "password-cleartext")
            _sub(server, "username", "%EMAILADDRESS%")
    return _xml(root)


class BadAutodiscoverRequest(ValueError):
    pass


def autodiscover_address(body: bytes) -> str:
    """The EMailAddress of an Outlook POX request: a small body, parsed with no DTD,
    entity or external reference allowed (defusedxml)."""
    if len(body) > 16_384:
        raise BadAutodiscoverRequest("request too large")
    try:
        root = parse_untrusted(body, forbid_dtd=True)
    except ET.ParseError as error:
        raise BadAutodiscoverRequest(f"not XML: {error}") from None
    except DefusedXmlException:
        raise BadAutodiscoverRequest("DTDs and entities are not accepted") from None
    found = root.find(f"{{{AUTODISCOVER_REQUEST_NS}}}Request/{{{AUTODISCOVER_REQUEST_NS}}}EMailAddress")
    if found is None or not (found.text or "").strip():
        raise BadAutodiscoverRequest("no Request/EMailAddress")
    return (found.text or "").strip()


def outlook(settings: Settings, address: str, display_name: str) -> bytes:
    """Outlook's POX autodiscover answer for ``address``."""
    host = settings.hostname.rstrip(".")
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE_NS)
    response = _sub(root, "Response")
    response.set("xmlns", AUTODISCOVER_OUTLOOK_NS)
    user = _sub(response, "User")
    _sub(user, "DisplayName", display_name)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    doors = client_ports(settings)
    for kind in ("imap", "pop3", "smtp"):
        for door in _by_preference(doors, kind)[:1]:
            protocol = _sub(account, "Protocol")
            _sub(protocol, "Type", kind.upper())
            _sub(protocol, "Server", host)
            _sub(protocol, "Port", str(door.port))
            _sub(protocol, "DomainRequired", "off")
            _sub(protocol, "LoginName", address)
            _sub(protocol, "SPA", "off")
            implicit = _KINDS[door.service][1] == "SSL"
            _sub(protocol, "SSL", "on")
            _sub(protocol, "Encryption", "SSL" if implicit else "TLS")
            _sub(protocol, "AuthRequired", "on")
            if kind == "smtp":
                _sub(protocol, "UsePOPAuth", "off")
                _sub(protocol, "SMTPLast", "off")
    return _xml(root)
