"""The DNS records a hosted domain needs (pure: no lookups).

MX, SPF, DKIM and DMARC as for a custom domain (aliases/dns_check.py), plus:

- MTA-STS (RFC 8461): ``_mta-sts.<domain>`` TXT with the policy's id, and the host
  ``mta-sts.<domain>`` that serves ``/.well-known/mta-sts.txt`` over HTTPS (postern
  serves the policy; a CNAME to this server's host name does the rest);
- TLS-RPT (RFC 8460): ``_smtp._tls.<domain>`` TXT asking for reports by mail;
- the SRV records of RFC 6186 and RFC 8314 that let mail clients find the doors;
- ``autoconfig.`` and ``autodiscover.`` host names, for Thunderbird's and Outlook's
  automatic set-up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from postern.aliases.dns_check import DMARC_VALUE, MX_PRIORITY, SPF_VALUE
from postern.config import Settings, parse_listen

MTA_STS_MAX_AGE = 604800  # one week, as RFC 8461 suggests for a stable policy


@dataclass(frozen=True, slots=True)
class Record:
    purpose: str  # mx, spf, dkim, dmarc, mta-sts, tls-rpt, srv, autoconfig
    type: str  # MX, TXT, SRV, CNAME
    name: str
    value: str

    def zone_line(self) -> str:
        """The record as a line of a zone file."""
        value = self.value
        if self.type == "TXT":
            # A TXT string holds at most 255 characters; longer values are several strings.
            value = " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))
        elif self.type in ("CNAME", "MX", "SRV"):
            value = value + "."
        return f"{self.name}. 3600 IN {self.type} {value}"


@dataclass(frozen=True, slots=True)
class ClientPort:
    """One door as a mail client reaches it."""

    service: str  # imap, imaps, pop3, pop3s, submission
    port: int


def _port(listen: str | None) -> int | None:
    if not listen:
        return None
    try:
        return parse_listen(listen).port or None
    except ValueError:
        return None


def client_ports(settings: Settings) -> list[ClientPort]:
    """The doors mail clients use, with the ports they reach from outside (a public
    port setting wins over the listening port). A door that is not open is left out."""
    doors = {d.strip() for d in settings.doors.split(",")}
    found: list[ClientPort] = []
    if "imap" in doors:
        imaps = _port(settings.imaps_listen)
        if imaps:
            found.append(ClientPort("imaps", settings.imap_public_port or imaps))
        imap = _port(settings.imap_listen)
        if imap:
            found.append(ClientPort("imap", imap if imaps else settings.imap_public_port or imap))
    if "pop3" in doors:
        pop3s = _port(settings.pop3s_listen)
        if pop3s:
            found.append(ClientPort("pop3s", pop3s))
        pop3 = _port(settings.pop3_listen)
        if pop3:
            found.append(ClientPort("pop3", pop3))
    if "submission" in doors:
        submission = _port(settings.submission_listen)
        if submission:
            found.append(ClientPort("submission", settings.submission_public_port or submission))
    return found


def mta_sts_policy(settings: Settings) -> str:
    """The MTA-STS policy (RFC 8461 §3.2): mail for our domains goes to our host, over
    verified TLS. ``testing`` until the operator says the certificates are real."""
    mode = "enforce" if settings.mta_sts_enforce else "testing"
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {settings.hostname.rstrip('.').lower()}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n"


def mta_sts_id(settings: Settings) -> str:
    """The policy's id: it changes exactly when the policy does (RFC 8461 §3.1)."""
    return hashlib.sha256(mta_sts_policy(settings).encode()).hexdigest()[:20]


def records(settings: Settings, domain: str, dkim: tuple[str, str] | None) -> list[Record]:
    """Every record ``domain`` (ASCII form) needs; ``dkim`` is the key's (name, value)."""
    host = settings.hostname.rstrip(".").lower()
    found = [
        Record("mx", "MX", domain, f"{MX_PRIORITY} {host}"),
        Record("spf", "TXT", domain, SPF_VALUE),
    ]
    if dkim is not None:
        found.append(Record("dkim", "TXT", dkim[0], dkim[1]))
    found += [
        Record("dmarc", "TXT", f"_dmarc.{domain}", DMARC_VALUE),
        Record("mta-sts", "TXT", f"_mta-sts.{domain}", f"v=STSv1; id={mta_sts_id(settings)}"),
        Record("mta-sts", "CNAME", f"mta-sts.{domain}", host),
        Record("tls-rpt", "TXT", f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
    ]
    for door in client_ports(settings):
        found.append(Record("srv", "SRV", f"_{door.service}._tcp.{domain}", f"0 1 {door.port} {host}"))
    found += [
        Record("autoconfig", "CNAME", f"autoconfig.{domain}", host),
        Record("autoconfig", "CNAME", f"autodiscover.{domain}", host),
    ]
    return found
